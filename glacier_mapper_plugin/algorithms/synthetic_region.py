"""glacier_mapper:synthetic_region (engine step synthetic_region)."""
from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputRasterLayer,
                       QgsProcessingOutputVectorLayer, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber)

from .base import GlacierMapperAlgorithm, run_name


class SyntheticRegionAlgorithm(GlacierMapperAlgorithm):
    ALG_ID = "synthetic_region"
    DISPLAY = "Synthetic glacier region"
    GROUP, GROUP_ID = "Data", "data"
    HELP = ("Writes a deterministic synthetic glacier region for demos, tests and training "
            "trials: a DEM with ridges and valleys (UTM 32N, 10 m), glaciers defined by the "
            "terrain (some with debris-covered tongues), Sentinel-2 L2A-like imagery for two "
            "dates (bands B2, B3, B4, B8, B12 as uint16 with the processing-baseline offset "
            "where the baseline has one, plus SCL; clouds, shadows, a no-data strip), true "
            "glacier-id rasters for both dates, and an inventory GeoPackage whose glaciers "
            "retreat by a known rate between the dates (true_rate_pct_yr).")
    PARAM_HELP = {
        "OUTPUT_FOLDER": "Folder to write the region into (created if needed; files are "
                         "replaced atomically).",
        "SEED": "Random seed: the same seed and sizes give the same region.",
        "SIZE_KM": "Side of the square region in km (10 m pixels).",
        "N_GLACIERS": "Number of glaciers to place (fewer if the terrain has no room).",
        "START_YEAR": "Inventory year: first scene and the inventory outlines.",
        "END_YEAR": "Year of the second scene, after the glaciers have retreated.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Seed", defaultValue=42, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            "SIZE_KM", "Region size (km)", QgsProcessingParameterNumber.Type.Double, 4.0, False, 1.0, 60.0))
        self.addParameter(QgsProcessingParameterNumber("N_GLACIERS", "Number of glaciers",
                                                       defaultValue=8, minValue=1, maxValue=500))
        self.addParameter(QgsProcessingParameterNumber("START_YEAR", "Inventory (start) year",
                                                       defaultValue=2015, minValue=1984, maxValue=2100))
        self.addParameter(QgsProcessingParameterNumber("END_YEAR", "End year", defaultValue=2023,
                                                       minValue=1985, maxValue=2100))
        self.addOutput(QgsProcessingOutputRasterLayer("IMAGERY_START", "Imagery, start date"))
        self.addOutput(QgsProcessingOutputRasterLayer("IMAGERY_END", "Imagery, end date"))
        self.addOutput(QgsProcessingOutputRasterLayer("DEM", "DEM"))
        self.addOutput(QgsProcessingOutputVectorLayer("INVENTORY", "Inventory"))
        self.addOutput(QgsProcessingOutputRasterLayer("TRUTH_START", "True glacier ids, start"))
        self.addOutput(QgsProcessingOutputRasterLayer("TRUTH_END", "True glacier ids, end"))
        self.addOutput(QgsProcessingOutputNumber("GLACIER_COUNT", "Glaciers placed"))
        self.addOutput(QgsProcessingOutputNumber("TRUE_REGIONAL_RATE", "True regional rate (%/yr)"))

    def finish(self, parameters, context, outputs, params):
        group = run_name("Synthetic region", f"seed {params.get('SEED')}")
        self.load_on_completion(context, outputs["INVENTORY"], "Inventory", "INVENTORY", "inventory.qml", group, 0)
        self.load_on_completion(context, outputs["DEM"], "DEM (hillshade)", "DEM", "dem.qml", group, 1)
        for rank, (key, date) in enumerate((("IMAGERY_END", outputs["END_DATE"]),
                                            ("IMAGERY_START", outputs["START_DATE"])), start=2):
            self.load_on_completion(context, outputs[key], f"Sentinel-2 L2A {date}", key,
                                    "s2_natural_colour.qml", group, rank)
