"""Imagery: Sentinel-2 L2A scenes from STAC catalogs or files, decoded to reflectance, matched
to a model's bands and cut per glacier, and the synthetic region that stands in for them.
May import the common floor (core/*.py) only. The quality (SCL) band lives here rather than
in the common labels: which pixels say nothing is a fact of the scene, not of the inventory.
"""
