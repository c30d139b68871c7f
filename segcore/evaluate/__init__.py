"""Evaluation (HALCON: evaluate_dl_model): the confusion matrix and its measures, the evaluation stage, its report and plots."""
