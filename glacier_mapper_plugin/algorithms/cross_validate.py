"""glacier_mapper:cross_validate -> core.crossval.cross_validate."""
from qgis.core import (QgsField, QgsProcessing, QgsProcessingOutputMultipleLayers,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant

from .base import GlacierMapperAlgorithm
from .layers import fields_for, source_geometries, write_rows
from .train_model import TRAINING_HELP, add_training_parameters, training_inputs

TABLE_TYPES = {"subregion": str, "patches": int, "glaciers": int, "accuracy": float, "iou": float,
               "precision": float, "recall": float, "f1": float}


class CrossValidateAlgorithm(GlacierMapperAlgorithm):
    ALG_ID = "cross_validate"
    DISPLAY = "Cross-validate glacier model"
    GROUP, GROUP_ID = "Segmentation", "segmentation"
    REQUIRES = ("torch", "segmentation_models_pytorch", "safetensors")
    HELP = ("Geographic K-fold cross-validation (Diaconu & Bamber 2023): glaciers sorted west "
            "to east are cut into FOLDS of equal glacierised area; for each fold a model is "
            "trained on the others (with a validation slice of glaciers) and tested on it. "
            "Writes the per-fold metrics in the layout of the paper's Table 1 with mean and "
            "std, the inventory with each glacier's fold, the fold models, and for each input "
            "raster an out-of-fold probability raster (each pixel predicted by the model of "
            "its nearest glacier's fold) that area change can use.")
    PARAM_HELP = dict(TRAINING_HELP, FOLDS="Number of geographic folds.",
                      OUTPUT_FOLDER="Folder for the fold models and out-of-fold predictions.",
                      OUTPUT_TABLE="Per-fold metrics (Table 1 layout) with mean and std rows.",
                      OUTPUT_INVENTORY="The inventory with a 'fold' field.")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        add_training_parameters(self)
        self.addParameter(QgsProcessingParameterNumber("FOLDS", "Folds", defaultValue=5, minValue=2, maxValue=50))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_TABLE", "Cross-validation metrics", QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_INVENTORY", "Inventory with folds", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputMultipleLayers("PREDICTIONS", "Out-of-fold probability rasters"))

    def execute(self, parameters, context, feedback, progress):
        from ..core.crossval import cross_validate
        rasters, inventory, dem, options = training_inputs(self, parameters, context)
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        cv = cross_validate(rasters, inventory, folder, dem, self.parameterAsInt(parameters, "FOLDS", context),
                            options, progress)
        rows = cv.table()
        fields = fields_for(rows, TABLE_TYPES)
        sink, table_id = self.parameterAsSink(parameters, "OUTPUT_TABLE", context, fields, QgsWkbTypes.NoGeometry)
        write_rows(sink, fields, rows)

        source = self.parameterAsSource(parameters, "INVENTORY", context)
        inv_fields = source.fields()
        inv_fields.append(QgsField("fold", QVariant.Int))
        inv_sink, inv_id = self.parameterAsSink(parameters, "OUTPUT_INVENTORY", context, inv_fields,
                                                source.wkbType(), source.sourceCrs())
        records = [dict(rec, fold=f + 1) for rec, f in zip(inventory.records, cv.folds)]
        write_rows(inv_sink, inv_fields, records, source_geometries(source))
        for r in rows:
            progress.info(f"{r['subregion']:>8}: IoU {r['iou']:.4f}  F1 {r['f1']:.4f}  "
                          f"precision {r['precision']:.4f}  recall {r['recall']:.4f}")
        return {"OUTPUT_TABLE": table_id, "OUTPUT_INVENTORY": inv_id, "OUTPUT_FOLDER": folder,
                "PREDICTIONS": [str(p) for p in cv.predictions]}

