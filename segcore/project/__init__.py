"""A user's own pipeline project, written by ``segcore init``: data under DVC, params.yaml
filled from the data, a dvc.yaml whose stages run ``segcore <stage>``, and the make targets."""
