"""The science of Glacier Mapper, by domain, over a common floor; imports numpy, torch and
rasterio, never qgis, `engine` or `algorithms`.

One way down: change -> segmentation -> imagery -> common, and massbalance -> common.
The common floor (the modules here: io, vector, labels, geodesy, identity, inventories,
progress, cluster) imports none of the domains; tests/test_architecture.py holds every arrow to it.
"""
