"""Area change: per-glacier and regional rates with the published filters, and their report.
May import segmentation (how a prediction raster is read), imagery and the common floor.
"""
