"""Segmentation: U-Net patches, training, cross-validation, tiled inference, evaluation,
the model file and its metrics. May import imagery (bands, quality) and the common floor.
"""
