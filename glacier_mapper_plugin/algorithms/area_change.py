"""glacier_mapper:area_change (engine step area_change)."""
from qgis.core import (QgsProcessing, QgsProcessingOutputNumber,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterField,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber)

from .base import DASK_HELP, GlacierMapperAlgorithm, present, run_name


class AreaChangeAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = frozenset({"THRESHOLD", "OUTLINE_UNCERTAINTY_PX", "MIN_SNR", "START_QUALITY", "END_QUALITY"})
    ALG_ID = "area_change"
    DISPLAY = "Glacier area change"
    GROUP, GROUP_ID = "Area change", "area_change"
    HELP = ("Per-glacier and regional glacier area change with the filters of Diaconu & "
            "Bamber (2023): predicted glacier area inside each inventory outline at the start "
            "(inventory) and end dates, on the ellipsoid, with masked pixels filled in with "
            "the recall seen on the unmasked ones; rate in km2/yr and %/yr of the start area; "
            "glaciers with recall < MIN_RECALL or a masked share > MAX_MASKED at either date, "
            "and the TRIM_PERCENT most extreme rates, are flagged (kept = false) with the "
            "reason, never dropped. Clouds and shadow are masked with the imagery's own SCL band "
            "when the predictions come from segment_glaciers (or with START_QUALITY/END_QUALITY). With ensembles (several predictions per date) each rate "
            "gets sigma = sqrt(s0² + s1²)/dt (DL4GAM) and an optional signal-to-noise filter. "
            "Writes the inventory with all columns (styled by rate), a regional summary, the "
            "Paul et al. (2020) size-class table and an HTML report with the paper's plots.")
    PARAM_HELP = {
        "INVENTORY": "Glacier outlines at the start date (any CRS).",
        "ID_FIELD": "Field with the glacier id (default: feature id).",
        "DATE_FIELD": "Field with the inventory date or year, used for the start year when "
                      "neither START_YEAR nor a DATE tag in the rasters gives it.",
        "START": "Prediction(s) at the start date: one mosaic or per-glacier rasters "
                 "(probability 0-1, percent 0-100 or 0/1 mask).",
        "END": "Prediction(s) at the end date, as START.",
        "START_YEAR": "Start year (decimal allowed); empty: the rasters' DATE tag, else DATE_FIELD.",
        "END_YEAR": "End year; empty: the rasters' DATE tag.",
        "START_QUALITY": "Rasters with an SCL/QUALITY band on the grids of START, same order "
                         "(e.g. the imagery): cloud, shadow and no-data pixels are masked. Empty: the "
                         "imagery each START prediction was made from (segment_glaciers records it) "
                         "when it has such a band, as acquire_imagery writes it; the log and the "
                         "report say which was used, and warn when clouds could not be masked.",
        "END_QUALITY": "As START_QUALITY for END.",
        "START_ENSEMBLE": "Optional ensemble members at the start date (one raster per member).",
        "END_ENSEMBLE": "Optional ensemble members at the end date (one raster per member).",
        "MIN_RECALL": "Minimum recall of the start prediction inside the outline (paper: 0.75).",
        "MAX_MASKED": "Maximum masked share of an outline at either date (paper: 0.20).",
        "TRIM_PERCENT": "Share of the most extreme rates dropped, half from each tail (paper: 5).",
        "MIN_SNR": "With ensembles: minimum |rate| / sigma_rate (0: no filter).",
        "THRESHOLD": "Probability at or above which a pixel is glacier.",
        "OUTLINE_UNCERTAINTY_PX": "Buffer-method area uncertainty: +- this many pixels along each "
                                  "outline, added in quadrature to the ensemble spread (0: none).",
        "OUTPUT": "Inventory polygons with the per-glacier area change columns.",
        "OUTPUT_SUMMARY": "Regional summary (one row).",
        "OUTPUT_SIZE_CLASSES": "Size-class table (Paul et al. 2020 classes).",
        "OUTPUT_REPORT": "HTML report with plots, parameters and filter counts.",
        "DASK_SCHEDULER": DASK_HELP + " Here: one task per prediction raster (per-glacier chips).",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterField("DATE_FIELD", "Inventory date field", parentLayerParameterName="INVENTORY", optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("START", "Start prediction(s)", QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers("END", "End prediction(s)", QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterNumber("START_YEAR", "Start year", QgsProcessingParameterNumber.Type.Double, None, True, 1950, 2200))
        self.addParameter(QgsProcessingParameterNumber("END_YEAR", "End year", QgsProcessingParameterNumber.Type.Double, None, True, 1950, 2200))
        self.addParameter(QgsProcessingParameterMultipleLayers("START_QUALITY", "Start quality (SCL)", QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("END_QUALITY", "End quality (SCL)", QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("START_ENSEMBLE", "Start ensemble", QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("END_ENSEMBLE", "End ensemble", QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterNumber("MIN_RECALL", "Minimum recall", QgsProcessingParameterNumber.Type.Double, 0.75, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterNumber("MAX_MASKED", "Maximum masked share", QgsProcessingParameterNumber.Type.Double, 0.20, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterNumber("TRIM_PERCENT", "Extreme rates dropped (%)", QgsProcessingParameterNumber.Type.Double, 5.0, False, 0.0, 50.0))
        self.addParameter(QgsProcessingParameterNumber("MIN_SNR", "Minimum signal-to-noise", QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", "Threshold", QgsProcessingParameterNumber.Type.Double, 0.5, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterNumber("OUTLINE_UNCERTAINTY_PX", "Outline uncertainty (pixels)", QgsProcessingParameterNumber.Type.Double, 0.5, False, 0.0, 10.0))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Area change", QgsProcessing.SourceType.TypeVectorPolygon))
        # Secondary outputs are optional (created by default in the dialog): a headless run
        # needs only OUTPUT.
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_SUMMARY", "Regional summary", QgsProcessing.SourceType.TypeVector,
                                                            optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_SIZE_CLASSES", "Size classes", QgsProcessing.SourceType.TypeVector,
                                                            optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_REPORT", "Report", "HTML files (*.html)", optional=True, createByDefault=True))
        self.add_dask_parameter()
        self.addOutput(QgsProcessingOutputNumber("REGIONAL_RATE", "Regional rate (%/yr)"))
        self.addOutput(QgsProcessingOutputNumber("N_KEPT", "Glaciers kept"))

    def finish(self, parameters, context, outputs, params):
        inventory = self.subject(parameters, context, "INVENTORY")
        present(context, outputs, run_name("Area change", inventory), [
            ("OUTPUT", "area_change.qml", f"Area change - {inventory}"),
            ("OUTPUT_SUMMARY", None, f"Regional summary - {inventory}"),
            ("OUTPUT_SIZE_CLASSES", None, f"Size classes - {inventory}")])
