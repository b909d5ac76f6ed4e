"""The science and engineering of Glacier Mapper. Imports numpy/torch/rasterio, never qgis."""
