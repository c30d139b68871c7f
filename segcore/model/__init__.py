"""The networks (compact U-Nets and segmentation-models-pytorch architectures) and the model bundle, the one model contract."""
