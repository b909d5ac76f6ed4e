"""glacier_mapper:evaluate_segmentation -> core.evaluate.evaluate."""
from qgis.core import (QgsField, QgsProcessing, QgsProcessingOutputNumber,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsWkbTypes)

from .base import GlacierMapperAlgorithm
from .layers import fields_for, inventory_from_source, source_geometries, write_rows


class EvaluateSegmentationAlgorithm(GlacierMapperAlgorithm):
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
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", "Prediction"))
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterRasterLayer("QUALITY", "Quality (SCL) raster", optional=True))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", "Threshold", QgsProcessingParameterNumber.Double, 0.5, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_TABLE", "Per-glacier metrics", QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Inventory with metrics", QgsProcessing.TypeVectorPolygon))
        for name in ("ACCURACY", "IOU", "PRECISION", "RECALL", "F1"):
            self.addOutput(QgsProcessingOutputNumber(name, name.title()))

    def execute(self, parameters, context, feedback, progress):
        from ..core.evaluate import evaluate
        prediction = self.parameterAsRasterLayer(parameters, "PREDICTION", context)
        source = self.parameterAsSource(parameters, "INVENTORY", context)
        id_field = self.parameterAsString(parameters, "ID_FIELD", context) or None
        inventory = inventory_from_source(source, id_field)
        quality = self.parameterAsRasterLayer(parameters, "QUALITY", context)
        ev = evaluate(prediction.source(), inventory, quality.source() if quality else None,
                      threshold=self.parameterAsDouble(parameters, "THRESHOLD", context))
        rows = [dict(r, id=str(r["id"])) for r in ev.glaciers]
        fields = fields_for(rows)
        sink, table_id = self.parameterAsSink(parameters, "OUTPUT_TABLE", context, fields, QgsWkbTypes.NoGeometry)
        write_rows(sink, fields, rows)
        joined_fields = source.fields()
        for f in fields:
            if f.name() != "id":
                joined_fields.append(QgsField(f.name(), f.type()))
        joined = [dict(rec, **{k: v for k, v in r.items() if k != "id"})
                  for rec, r in zip(inventory.records, ev.glaciers)]
        out, out_id = self.parameterAsSink(parameters, "OUTPUT", context, joined_fields,
                                           source.wkbType(), source.sourceCrs())
        write_rows(out, joined_fields, joined, source_geometries(source))
        o = ev.overall
        progress.info(f"pixels: IoU {o['iou']:.4f}, F1 {o['f1']:.4f}, precision {o['precision']:.4f}, "
                      f"recall {o['recall']:.4f}, accuracy {o['accuracy']:.4f}")
        return {"OUTPUT_TABLE": table_id, "OUTPUT": out_id, "ACCURACY": o["accuracy"], "IOU": o["iou"],
                "PRECISION": o["precision"], "RECALL": o["recall"], "F1": o["f1"]}
