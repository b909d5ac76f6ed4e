"""glacier_mapper:cross_validate (engine step cross_validate)."""
from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingOutputMultipleLayers,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber)

from .base import GlacierMapperAlgorithm, present, run_name
from .segment_glaciers import PROBABILITY_OPACITY
from .train_model import TRAINING_ADVANCED, TRAINING_HELP, add_training_parameters


class CrossValidateAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = TRAINING_ADVANCED
    ALG_ID = "cross_validate"
    DISPLAY = "Cross-validate glacier model"
    GROUP, GROUP_ID = "Segmentation", "segmentation"
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
                      OUTPUT_INVENTORY="The inventory with a 'fold' field.",
                      MEMBERS="Models per fold that differ only by their seed (SEED, SEED + 1, ...); "
                              "a fold's test metrics and out-of-fold prediction use their mean "
                              "probability (the ensemble). Files: fold_K.gmm, fold_K_seedN.gmm.")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        add_training_parameters(self)
        self.addParameter(QgsProcessingParameterNumber("FOLDS", "Folds", defaultValue=5, minValue=2, maxValue=50))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_TABLE", "Cross-validation metrics", QgsProcessing.SourceType.TypeVector))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_INVENTORY", "Inventory with folds", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputMultipleLayers("PREDICTIONS", "Out-of-fold probability rasters"))

    def finish(self, parameters, context, outputs, params):
        inventory = self.subject(parameters, context, "INVENTORY")
        run = run_name("Cross-validation", inventory)
        present(context, outputs, run, [("OUTPUT_INVENTORY", "folds.qml", f"Inventory by fold - {inventory}"),
                                        ("OUTPUT_TABLE", None, f"Fold metrics - {inventory}")])
        if context.project() is not None:  # the out-of-fold maps, below the folds
            for path in outputs.get("PREDICTIONS") or []:
                self.load_on_completion(context, path, f"Out-of-fold probability - {Path(path).stem}",
                                        "PREDICTIONS", "probability.qml", run, 2, PROBABILITY_OPACITY)
