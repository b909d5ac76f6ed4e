"""glacier_mapper:train_model (engine step train_model)."""
from qgis.core import (QgsProcessing, QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString)

from .base import DASK_HELP, GlacierMapperAlgorithm, present, run_name, string_enum
from .segment_glaciers import DEVICES

ENCODERS = ["resnet34", "resnet18", "resnet50"]
LOSSES = ["bce+dice", "bce"]
SCHEDULES = ["cosine", "constant"]
WEIGHTINGS = ["none", "dark"]

TRAINING_HELP = {
    "INPUT": "One or more imagery rasters (per-glacier chips or mosaics) in a metric CRS.",
    "INVENTORY": "Glacier outlines used as labels (any CRS; selected features only if the "
                 "layer has a selection and 'selected features only' is ticked).",
    "ID_FIELD": "Field with the glacier id (default: feature id).",
    "DEM": "Elevation raster, warped onto each INPUT grid when the bands include DEM.",
    "QUALITY": "Band with SCL classes whose no-data/cloud/shadow/cirrus pixels the loss "
               "ignores: auto (a band named SCL or QUALITY), a band name or number, or none.",
    "BANDS": "Model bands: names (B2,B3,B4,B8,B12,DEM) or a mapping (B2=1,...,DEM=7). "
             "Default: all bands in file order except SCL/QUALITY, plus DEM when given.",
    "FEATURES": "Derived inputs after BANDS, computed from the decoded bands when patches are cut and again, "
                "identically, when segment_glaciers runs the model (recorded in the model file): NDSI (B3, B11), "
                "NDWI (B3, B8), NDVI (B8, B4) (or GREEN, SWIR1, NIR, RED), and from the DEM SLOPE, ASPECT_SIN, "
                "ASPECT_COS, CURVATURE, RELIEF (range within 300 m), or 'terrain' for all five. Comma-separated; "
                "empty: none. docs/benchmarks.md says what each adds on a real scene.",
    "PATCH_SIZE": "Side of the training patches in pixels (multiple of 32).",
    "ENCODER": "U-Net encoder (segmentation-models-pytorch).",
    "ENCODER_WEIGHTS": "Starting weights: none (random), imagenet (the encoder's ImageNet weights, "
                       "as the paper used: segmentation-models-pytorch downloads them from the "
                       "Hugging Face hub on first use into its cache, ~/.cache/huggingface/hub or "
                       "HF_HUB_CACHE, which can be copied to offline machines), or the path of a "
                       ".gmm model to fine-tune (same encoder and bands; its normalisation is kept): "
                       "a model of one region adapted to another.",
    "PATCH_CACHE": "Folder for the training patches, cut once and reused by every epoch, fold and "
                   "rerun with the same inputs (about 1.6 MB per 256 px patch of 6 bands). "
                   "Default: the user's cache (~/.cache/glacier_mapper/patches).",
    "KEEP_PATCHES": "Keep the patch cache after a successful run (to train again with other "
                    "settings); a failed or cancelled run always keeps it, so a rerun resumes.",
    "EPOCHS": "Passes over the training patches (at most: see PATIENCE).",
    "PATIENCE": "Stop when the validation IoU has not improved for this many epochs (the best epoch is "
                "kept either way); 0 trains all EPOCHS.",
    "LOSS": "bce+dice: binary cross-entropy plus a soft Dice term, which counts missed and added glacier "
            "pixels alike whatever the glacier share (on the everest_west benchmark it raised the recall of "
            "debris-covered and shaded ice, docs/benchmarks.md); bce: cross-entropy alone (Diaconu & Bamber 2023).",
    "WEIGHTING": "none, or dark: glacier pixels darker than the darkest third of the training glacier pixels "
                 "(debris-covered and shaded ice, which a U-Net misses first) count twice in the cross-entropy. On "
                 "the everest_west benchmark it raised the recall of the darkest third by 0.05 and the IoU by 0.01, "
                 "within the spread of seeds (docs/benchmarks.md); weighting by class balance was worse and is not "
                 "offered.",
    "SCHEDULE": "Learning rate over the run: cosine (decays to 1 % of LEARNING_RATE by the last epoch) or "
                "constant.",
    "BATCH_SIZE": "Patches per optimisation step.",
    "LEARNING_RATE": "AdamW learning rate.",
    "DEVICE": "auto uses a CUDA GPU (with mixed precision) when torch sees one, else an Apple GPU (mps, "
              "Apple silicon, fp32), else the CPU; a device the engine's torch cannot use is refused, naming it.",
    "SEED": "Random seed: the same seed gives the same model on the CPU.",
    "VAL_FRACTION": "Share of glaciers (not patches) held out for validation, model selection and calibration: "
                    "one spatial block (a glacier and its nearest neighbours), whose pixels are left out of the "
                    "training loss where training patches reach over them. The model's probabilities are "
                    "calibrated on them (temperature scaling), and its validation IoU is compared with an NDSI "
                    "(or brightness) threshold on the same glaciers: a model that does not beat it says so.",
    "MEMBERS": "Ensemble members: models that differ only by their seed (SEED, SEED + 1, ...), as "
               "DL4GAM's ensembles; segment_glaciers runs them together (MODEL and ENSEMBLE: the MODELS "
               "output) and writes each member's probability (OUTPUT_MEMBERS), whose spread is the model "
               "uncertainty that area change uses (START_ENSEMBLE/END_ENSEMBLE).",
    "DASK_SCHEDULER": DASK_HELP + " Here: one task per member (per fold x member when "
                      "cross-validating), on a worker with a GPU resource when DEVICE is cuda; "
                      "the patch cache must be on the shared filesystem (PATCH_CACHE).",
}


TRAINING_ADVANCED = frozenset({"DEVICE", "LEARNING_RATE", "SEED", "QUALITY", "VAL_FRACTION", "BANDS", "BATCH_SIZE",
                               "PATCH_CACHE", "KEEP_PATCHES", "LOSS", "SCHEDULE", "PATIENCE", "WEIGHTING"})


def add_training_parameters(alg):
    alg.addParameter(QgsProcessingParameterMultipleLayers("INPUT", "Imagery", QgsProcessing.SourceType.TypeRaster))
    alg.add_inventory_parameters()
    alg.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM", optional=True))
    alg.addParameter(QgsProcessingParameterString("QUALITY", "Quality (SCL) band", defaultValue="auto"))
    alg.addParameter(QgsProcessingParameterString("BANDS", "Bands", optional=True))
    alg.addParameter(QgsProcessingParameterString("FEATURES", "Derived features (NDSI, NDWI, NDVI, terrain)", optional=True))
    alg.addParameter(QgsProcessingParameterNumber("PATCH_SIZE", "Patch size (px)", defaultValue=256, minValue=32, maxValue=2048))
    alg.addParameter(string_enum("ENCODER", "Encoder", ENCODERS))
    alg.addParameter(QgsProcessingParameterString("ENCODER_WEIGHTS", "Encoder weights (none, imagenet or a .gmm)",
                                                  defaultValue="none"))
    alg.addParameter(QgsProcessingParameterNumber("EPOCHS", "Epochs", defaultValue=30, minValue=1, maxValue=10000))
    alg.addParameter(QgsProcessingParameterNumber("PATIENCE", "Early-stopping patience (epochs)", defaultValue=10, minValue=0,
                                                  maxValue=10000))
    alg.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size", defaultValue=8, minValue=1, maxValue=1024))
    alg.addParameter(QgsProcessingParameterNumber("LEARNING_RATE", "Learning rate", QgsProcessingParameterNumber.Type.Double, 1e-3, False, 1e-7, 1.0))
    alg.addParameter(string_enum("LOSS", "Loss", LOSSES))
    alg.addParameter(string_enum("SCHEDULE", "Learning-rate schedule", SCHEDULES))
    alg.addParameter(string_enum("WEIGHTING", "Loss weighting", WEIGHTINGS))
    alg.addParameter(string_enum("DEVICE", "Device", DEVICES))
    alg.addParameter(QgsProcessingParameterNumber("SEED", "Seed", defaultValue=42, minValue=0))
    alg.addParameter(QgsProcessingParameterNumber("VAL_FRACTION", "Validation share of glaciers", QgsProcessingParameterNumber.Type.Double, 0.2, False, 0.0, 0.9))
    alg.addParameter(QgsProcessingParameterFile("PATCH_CACHE", "Patch cache folder",
                                                QgsProcessingParameterFile.Behavior.Folder, optional=True))
    alg.addParameter(QgsProcessingParameterBoolean("KEEP_PATCHES", "Keep the patch cache", defaultValue=False))
    alg.addParameter(QgsProcessingParameterNumber("MEMBERS", "Ensemble members", defaultValue=1, minValue=1, maxValue=100))
    alg.add_dask_parameter()


class TrainModelAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = TRAINING_ADVANCED
    KEEP = frozenset({"OUTPUT_MODEL"})
    ALG_ID = "train_model"
    DISPLAY = "Train glacier model"
    GROUP, GROUP_ID = "Segmentation", "segmentation"
    HELP = ("Trains a U-Net on imagery with an existing inventory as labels (Diaconu & Bamber "
            "2023): patches centred on glaciers, binary cross-entropy that ignores no-data, "
            "cloud and shadow pixels, per-band standardisation from the training patches, D4 "
            "augmentation, validation on held-out glaciers, and the epoch with the best "
            "per-glacier validation IoU kept. Patches are cut once into an on-disk cache and "
            "streamed, so memory does not grow with the region. A stopped run resumes from its "
            "last epoch when started again with the same settings.")
    PARAM_HELP = dict(TRAINING_HELP, OUTPUT_MODEL="The model file to write (.gmm); with MEMBERS > 1 it is "
                      "the first member and the others are written beside it as NAME_seedN.gmm.",
                      OUTPUT_CURVE="The training curve: per member and epoch the training loss, the validation IoU "
                                   "per glacier, the learning rate and whether it is the kept epoch.",
                      OUTPUT_REPORT="HTML report: the models' validation IoU against the threshold baseline, the "
                                    "training curve, the reliability diagram before and after calibration and "
                                    "the expected calibration error.")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        add_training_parameters(self)
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_MODEL", "Model file", "Glacier Mapper model (*.gmm)"))
        # Optional, created by default in the dialog: a headless run needs only OUTPUT_MODEL.
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_CURVE", "Training curve", QgsProcessing.SourceType.TypeVector,
                                                            optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_REPORT", "Training report", "HTML files (*.html)",
                                                                optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber("VAL_IOU", "Validation IoU per glacier"))
        self.addOutput(QgsProcessingOutputNumber("BEST_EPOCH", "Best epoch"))

    def finish(self, parameters, context, outputs, params):
        inventory = self.subject(parameters, context, "INVENTORY")
        present(context, outputs, run_name("Training", inventory),
                [("OUTPUT_CURVE", None, f"Training curve - {inventory}")])


