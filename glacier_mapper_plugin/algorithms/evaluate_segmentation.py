"""glacier_mapper:evaluate_segmentation (engine step evaluate_segmentation)."""
from qgis.core import (QgsProcessing, QgsProcessingOutputNumber, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer)

from .base import DASK_HELP, GlacierMapperAlgorithm, present, run_name


class EvaluateSegmentationAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = frozenset({"THRESHOLD"})
    ALG_ID = "evaluate_segmentation"
    DISPLAY = "Evaluate segmentation"
    GROUP, GROUP_ID = "Segmentation", "segmentation"
    HELP = ("Compares a prediction (probability 0-1, percent 0-100, or 0/1 mask) with the "
            "inventory outlines: accuracy, IoU, precision, recall and F1 over all valid pixels, "
            "and per glacier the inventory area and predicted area inside the outline (on the "
            "ellipsoid), recall, masked fraction, and false positives in rings 0-10, 10-20 and "
            "20-50 m outside the outline (each pixel counted for its nearest glacier).")
    PARAM_HELP = {
        "PREDICTION": "Probability or mask raster written by segment_glaciers or cross_validate.",
        "INVENTORY": "Glacier outlines (any CRS).",
        "ID_FIELD": "Field with the glacier id (default: feature id).",
        "QUALITY": "Optional raster on the prediction's grid with an SCL or QUALITY band "
                   "(e.g. the imagery): its cloud/shadow/no-data pixels are masked.",
        "THRESHOLD": "Probability at or above which a pixel counts as glacier.",
        "OUTPUT_TABLE": "Per-glacier metrics table.",
        "OUTPUT": "The inventory polygons with the per-glacier metrics joined.",
        "DASK_SCHEDULER": DASK_HELP + " Here: one task per block of rows of PREDICTION.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", "Prediction"))
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterRasterLayer("QUALITY", "Quality (SCL) raster", optional=True))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", "Threshold", QgsProcessingParameterNumber.Type.Double, 0.5, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_TABLE", "Per-glacier metrics", QgsProcessing.SourceType.TypeVector))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Inventory with metrics", QgsProcessing.SourceType.TypeVectorPolygon))
        self.add_dask_parameter()
        for name in ("ACCURACY", "IOU", "PRECISION", "RECALL", "F1"):
            self.addOutput(QgsProcessingOutputNumber(name, name.title()))

    def finish(self, parameters, context, outputs, params):
        prediction = self.subject(parameters, context, "PREDICTION")
        present(context, outputs, run_name("Evaluation", prediction), [
            ("OUTPUT", "evaluation.qml", f"Glaciers by recall - {prediction}"),
            ("OUTPUT_TABLE", None, f"Per-glacier metrics - {prediction}")])
