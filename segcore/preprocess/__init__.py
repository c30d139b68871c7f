"""Preprocessing (HALCON: preprocess_dl_dataset): image and label transforms, class weights, weight images, and the stage that writes the samples."""
