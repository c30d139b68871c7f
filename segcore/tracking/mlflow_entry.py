"""The file MLflow executes to build a logged segcore model (MLflow's "models from code").

segcore never imports it; :func:`segcore.tracking.mlflow_model.log_pyfunc_model` hands its path to
MLflow, which copies it into the logged model and runs it when the model is loaded.
"""

from mlflow.models import set_model

from segcore.tracking.served_model import SegmentationModel

set_model(SegmentationModel())
