"""Inference (HALCON: apply_dl_model): applying a bundle to images, folders of files, and the ONNX backend."""
