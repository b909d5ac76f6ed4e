"""glacier_mapper:acquire_imagery (engine step acquire_imagery)."""
from qgis.core import (QgsProcessing, QgsProcessingOutputMultipleLayers, QgsProcessingParameterDateTime,
                       QgsProcessingParameterDistance, QgsUnitTypes,
                       QgsProcessingOutputNumber, QgsProcessingParameterEnum, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from qgis.PyQt.QtCore import QDate

from .base import DASK_HELP, GlacierMapperAlgorithm, present, run_name

class AcquireImageryAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = frozenset({"MAX_CANDIDATES", "MAX_WORKERS", "COLLECTION", "SELECTION"})
    ALG_ID = "acquire_imagery"
    DISPLAY = "Acquire Sentinel-2 imagery per glacier"
    GROUP, GROUP_ID = "Data", "data"
    HELP = ("For every glacier of the inventory (selected features only when ticked), finds "
            "Sentinel-2 L2A scenes within +-WINDOW_DAYS of DATE on a STAC API, keeps the "
            "MAX_CANDIDATES least cloudy, and picks the one with the smallest share of the "
            "glacier outline under cloud, shadow, saturation or no data according to SCL (ties: "
            "closest date). Reads only the needed windows of the cloud-optimised GeoTIFFs, "
            "warps them onto the glacier's UTM grid at 10 m (B12 bilinear, SCL nearest), "
            "mosaics tiles and UTM zones, decodes reflectance with each item's offset and adds "
            "the DEM. Writes one GeoTIFF per glacier (B2, B3, B4, B8, B12, DEM, QUALITY) and a "
            "table with the scene, date, cloud and masked shares and a status for every "
            "glacier. Existing outputs made with the same parameters are kept, so a rerun "
            "resumes. Works with Earth Search (Collection 1 and the older sentinel-2-l2a), "
            "Planetary Computer (signed URLs) and static catalogs on disk (give the path of "
            "catalog.json). Whether the digital numbers still carry the +1000 offset of "
            "processing baseline 04.00 and later is read from each item's metadata and checked "
            "against its pixels; where they disagree the pixels win and the table says so.")
    PARAM_HELP = {
        "INVENTORY": "Glacier outlines (any CRS).",
        "ID_FIELD": "Field with the glacier id, used for file names (default: feature id).",
        "DATE": "Target date, YYYY-MM-DD (e.g. the end of the ablation season).",
        "WINDOW_DAYS": "Scenes within this many days before or after DATE are considered.",
        "MAX_CANDIDATES": "How many least-cloudy scenes are checked over each glacier.",
        "STAC_URL": "STAC API (Earth Search v1 by default; Planetary Computer is signed "
                    "automatically) or the path of a static catalog.json.",
        "COLLECTION": "Sentinel-2 L2A collection ids on that API, comma-separated, in order of "
                      "preference: candidates come from all; the same acquisition is taken from "
                      "the first collection that holds it (default: Earth Search Collection 1, "
                      "then the older sentinel-2-l2a).",
        "SELECTION": "cloud: the scene with the least cloud, shadow and no data over the glacier "
                     "(the paper). cloud_snow: among scenes within 5 % of that, the one with the "
                     "least seasonal snow on the ground around the glacier (DL4GAM).",
        "BUFFER_M": "Margin around each glacier's outline (m).",
        "DEM": "stac:<collection> (e.g. stac:cop-dem-glo-30) on the same API, a DEM raster "
               "path, or empty for none.",
        "OUTPUT_FOLDER": "Folder for the per-glacier GeoTIFFs.",
        "MAX_WORKERS": "Glaciers downloaded in parallel (here; on a cluster, each worker's threads).",
        "DASK_SCHEDULER": DASK_HELP + " Here: one task per glacier.",
        "OUTPUT": "Table: glacier id, status, collection, scene, date, cloud %, masked %, snow % "
                  "(chosen scene and the cloud-only choice), how the +1000 offset was decided "
                  "(metadata, pixels or both; the darkest DNs), file.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        from ..core.imagery.catalogs import DEFAULT_COLLECTIONS, EARTH_SEARCH, SELECTIONS
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterDateTime("DATE", "Target date", QgsProcessingParameterDateTime.Type.Date,
                                                         defaultValue=QDate(2023, 9, 1)))
        self.addParameter(QgsProcessingParameterNumber("WINDOW_DAYS", "Window (+- days)", defaultValue=15, minValue=0, maxValue=365))
        self.addParameter(QgsProcessingParameterNumber("MAX_CANDIDATES", "Candidate scenes", defaultValue=5, minValue=1, maxValue=100))
        self.addParameter(QgsProcessingParameterString("STAC_URL", "STAC API or catalog", defaultValue=EARTH_SEARCH))
        self.addParameter(QgsProcessingParameterString("COLLECTION", "Collections (priority order)", defaultValue=DEFAULT_COLLECTIONS))
        self.addParameter(QgsProcessingParameterEnum("SELECTION", "Scene selection", options=list(SELECTIONS), defaultValue=0))
        # Metres on the glacier's own UTM grid, whatever the inventory's CRS (often degrees).
        buffer = QgsProcessingParameterDistance("BUFFER_M", "Buffer around each glacier", 1280.0, minValue=0.0,
                                                maxValue=50000.0)
        buffer.setDefaultUnit(QgsUnitTypes.DistanceUnit.DistanceMeters)
        self.addParameter(buffer)
        self.addParameter(QgsProcessingParameterString("DEM", "DEM", defaultValue="stac:cop-dem-glo-30", optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addParameter(QgsProcessingParameterNumber("MAX_WORKERS", "Parallel downloads", defaultValue=4, minValue=1, maxValue=64))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Acquisition table", QgsProcessing.SourceType.TypeVector))
        self.add_dask_parameter()
        self.addOutput(QgsProcessingOutputMultipleLayers("FILES", "Acquired rasters"))
        self.addOutput(QgsProcessingOutputNumber("N_OK", "Glaciers with imagery"))

    def finish(self, parameters, context, outputs, params):
        inventory = self.subject(parameters, context, "INVENTORY")
        present(context, outputs, run_name("Imagery acquired", inventory),
                [("OUTPUT", None, f"Acquisition table - {inventory}")])
