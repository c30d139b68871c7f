"""The dataset: synthetic pills, reading images and labels (HALCON: read_dl_dataset_segmentation), the dataset table, split, statistics and the preprocessed sample files."""
