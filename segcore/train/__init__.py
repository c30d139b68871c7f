"""Training (HALCON: train_dl_model): setup, the loop, tensors, augmentation, solver, loss, checkpoint and distributed training."""
