"""glacier_mapper:acquire_imagery -> core.acquire.acquire."""
import datetime as dt

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputMultipleLayers,
                       QgsProcessingOutputNumber, QgsProcessingParameterEnum, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsWkbTypes)

from .base import GlacierMapperAlgorithm
from .layers import fields_for, inventory_from_source, write_rows

RESULT_TYPES = {"glacier_id": str, "status": str, "collection": str, "scene_id": str, "date": str,
                "cloud_pct": float, "masked_pct": float, "snow_pct": float, "cloud_only_snow_pct": float,
                "candidates": int, "offset_in_dn": str, "offset_decided_by": str, "offset_metadata": str,
                "offset_pixels": str, "dark_dn": float, "file": str, "detail": str}


class AcquireImageryAlgorithm(GlacierMapperAlgorithm):
    ALG_ID = "acquire_imagery"
    DISPLAY = "Acquire Sentinel-2 imagery per glacier"
    GROUP, GROUP_ID = "Data", "data"
    REQUIRES = ("pystac_client",)
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
        "MAX_WORKERS": "Glaciers downloaded in parallel.",
        "OUTPUT": "Table: glacier id, status, collection, scene, date, cloud %, masked %, snow % "
                  "(chosen scene and the cloud-only choice), how the +1000 offset was decided "
                  "(metadata, pixels or both; the darkest DNs), file.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        from ..core.acquire import DEFAULT_COLLECTIONS, EARTH_SEARCH, SELECTIONS
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterString("DATE", "Target date (YYYY-MM-DD)", defaultValue="2023-09-01"))
        self.addParameter(QgsProcessingParameterNumber("WINDOW_DAYS", "Window (+- days)", defaultValue=15, minValue=0, maxValue=365))
        self.addParameter(QgsProcessingParameterNumber("MAX_CANDIDATES", "Candidate scenes", defaultValue=5, minValue=1, maxValue=100))
        self.addParameter(QgsProcessingParameterString("STAC_URL", "STAC API or catalog", defaultValue=EARTH_SEARCH))
        self.addParameter(QgsProcessingParameterString("COLLECTION", "Collections (priority order)", defaultValue=DEFAULT_COLLECTIONS))
        self.addParameter(QgsProcessingParameterEnum("SELECTION", "Scene selection", options=list(SELECTIONS), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("BUFFER_M", "Buffer (m)", QgsProcessingParameterNumber.Double, 1280.0, False, 0.0, 50000.0))
        self.addParameter(QgsProcessingParameterString("DEM", "DEM", defaultValue="stac:cop-dem-glo-30", optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addParameter(QgsProcessingParameterNumber("MAX_WORKERS", "Parallel downloads", defaultValue=4, minValue=1, maxValue=64))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Acquisition table", QgsProcessing.TypeVector))
        self.addOutput(QgsProcessingOutputMultipleLayers("FILES", "Acquired rasters"))
        self.addOutput(QgsProcessingOutputNumber("N_OK", "Glaciers with imagery"))

    def execute(self, parameters, context, feedback, progress):
        from ..core.acquire import SELECTIONS, AcquireOptions, acquire
        source = self.parameterAsSource(parameters, "INVENTORY", context)
        inventory = inventory_from_source(source, self.parameterAsString(parameters, "ID_FIELD", context) or None)
        text = self.parameterAsString(parameters, "DATE", context).strip()
        try:
            date = dt.date.fromisoformat(text[:10])
        except ValueError:
            raise QgsProcessingException(f"DATE must be YYYY-MM-DD, not {text!r}") from None
        options = AcquireOptions(
            date=date, window_days=self.parameterAsInt(parameters, "WINDOW_DAYS", context),
            max_candidates=self.parameterAsInt(parameters, "MAX_CANDIDATES", context),
            stac_url=self.parameterAsString(parameters, "STAC_URL", context).strip(),
            collection=self.parameterAsString(parameters, "COLLECTION", context).strip(),
            buffer_m=self.parameterAsDouble(parameters, "BUFFER_M", context),
            dem=self.parameterAsString(parameters, "DEM", context).strip() or None,
            max_workers=self.parameterAsInt(parameters, "MAX_WORKERS", context),
            selection=SELECTIONS[self.parameterAsEnum(parameters, "SELECTION", context)])
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        glaciers = [(i, g, inventory.crs) for i, g in zip(inventory.ids, inventory.geometries) if g is not None]
        results = acquire(glaciers, options, folder, progress)
        rows = [{name: (str(r.id) if name == "glacier_id" else getattr(r, name)) for name in RESULT_TYPES}
                for r in results]
        fields = fields_for(rows, RESULT_TYPES)
        sink, table_id = self.parameterAsSink(parameters, "OUTPUT", context, fields, QgsWkbTypes.NoGeometry)
        write_rows(sink, fields, rows)
        del sink
        files = [r.file for r in results if r.file]
        n_ok = sum(r.status in ("ok", "exists") for r in results)
        progress.info(f"{n_ok} of {len(results)} glaciers have imagery in {folder}")
        for r in results:
            if r.status not in ("ok", "exists"):
                progress.warning(f"{r.id}: {r.status}: {r.detail}")
        return {"OUTPUT": table_id, "OUTPUT_FOLDER": folder, "FILES": files, "N_OK": n_ok}
