"""STAC catalogs and scene-selection choices known by name (standard library only: the QGIS
side shows them as parameter defaults without importing the engine's packages)."""

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"
PC_SAS = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
# Collection 1 first: ESA's consistent reprocessing of the whole archive (one processing
# baseline >= 05.00, the offset declared rightly); the older collection fills gaps.
DEFAULT_COLLECTIONS = "sentinel-2-c1-l2a,sentinel-2-l2a"
SELECTIONS = ("cloud", "cloud_snow")
