"""glacier_mapper:segment_glaciers (engine step segment_glaciers)."""
from qgis.core import (QgsProcessing, QgsProcessingOutputMultipleLayers, QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterDistance,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterFile, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsUnitTypes,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString, QgsProcessingParameterVectorDestination)

from .base import DASK_HELP, GlacierMapperAlgorithm, present, run_name, string_enum

DEVICES = ["auto", "cuda", "mps", "cpu"]  # the engine's core.segmentation.segment.DEVICES
PRECISIONS = ["auto", "fp32", "bf16", "fp16", "int8"]  # core.segmentation.segment.PRECISIONS
TTAS = ["none", "flips", "d4"]
BACKENDS = ["auto", "torch", "onnxruntime", "openvino"]
PROBABILITY_FORMATS = ["float32", "uint8"]
PROBABILITY_OPACITY = 0.6  # the imagery shows through where the model is unsure


class SegmentGlaciersAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = frozenset({"DEVICE", "PRECISION", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "BANDS",
                          "PROBABILITY_FORMAT", "THRESHOLD", "SIMPLIFY", "TTA", "BACKEND"})
    ALG_ID = "segment_glaciers"
    DISPLAY = "Segment glaciers"
    GROUP, GROUP_ID = "Segmentation", "segmentation"
    HELP = ("Runs a Glacier Mapper U-Net over a raster of any size, tile by tile with smooth "
            "blending of overlapping tiles, on CUDA or the CPU, and writes the glacier "
            "probability, a mask and glacier polygons. Bands are matched to the model by their "
            "names (B2, B3, B4, B8, B12, DEM) or by the BANDS mapping; Sentinel-2 L2A numbers "
            "are decoded to reflectance with the raster's scale/offset or processing baseline. "
            "No-data pixels (0 in L2A, NaN, the raster's nodata) stay no data. Inputs in a "
            "geographic CRS are refused: reproject them to their UTM zone first.")
    PARAM_HELP = {
        "INPUT": "Multi-band raster in a metric CRS (per-glacier chip or a whole tile).",
        "DEM": "Elevation raster, reprojected and resampled on the fly onto the INPUT grid; "
               "needed when the model uses elevation and INPUT has no DEM band.",
        "MODEL": "Glacier Mapper model file (.gmm: safetensors + JSON header).",
        "ENSEMBLE": "Optional other members of MODEL's ensemble (train_model with MEMBERS > 1 writes them as "
                    "<name>_seed<N>.gmm beside its OUTPUT_MODEL; its MODELS output lists them all, MODEL "
                    "included, which is counted once). The members run as one network on each batch (one "
                    "graph for onnxruntime and OpenVINO) and OUTPUT_PROBABILITY is their mean, each member "
                    "calibrated by its own temperature and fed the tiles in its own normalisation; the mask "
                    "thresholds the mean. Members must read the same bands and features at the same pixel size. "
                    "Not with PRECISION int8.",
        "DEVICE": "auto uses a CUDA GPU when torch sees one, else an Apple GPU (mps, Apple silicon; operators "
                  "it lacks run on the CPU and are named in the log), else the CPU. A device the engine's torch "
                  "cannot use is refused, naming the torch installed (a CUDA torch: Install engine, TORCH=cuda).",
        "PRECISION": "auto: bf16 (or fp16) on CUDA, bf16 on CPUs with bf16 support, else fp32 (always on Apple GPUs). "
                     "int8 (CPU, BACKEND onnxruntime, openvino or auto): the network quantised with windows of the training "
                     "rasters stored in the model file, about twice as fast as fp32 on an AVX2 CPU; refused for a "
                     "model that loses more than 0.005 IoU by it on its own validation glaciers (checked once, and "
                     "said in the log) and for an older model file without those windows (train it again).",
        "BACKEND": "The runtime of the network on the CPU: auto times torch, onnxruntime and OpenVINO (those installed "
                   "in the engine) on one batch the first time a model meets this computer, keeps the fastest "
                   "(remembered per model and machine) and says so in the log; or one of them by name. All give "
                   "the same map (>= 99.9 % of pixels agree). onnxruntime runs fp32 or int8; on a GPU it is torch. "
                   "docs/benchmarks.md compares them at equal precision.",
        "TILE_SIZE": "Tile side in pixels (multiple of 32). Memory grows with it.",
        "OVERLAP": "Pixels shared by neighbouring tiles (at most half the tile size): the outer quarter "
                   "of each overlap is ignored, so every pixel comes from a tile that sees enough "
                   "context around it and the tile size does not change the map.",
        "BATCH_SIZE": "Tiles in the network at once (memory grows with it). On a multi-core CPU they are "
                      "shared by two parallel inference streams; on CUDA they form one forward pass.",
        "THRESHOLD": "Probability above which a pixel is glacier; empty: the model's own.",
        "TTA": "Test-time augmentation: none; flips (the tile, mirrored left-right and up-down and turned "
               "180 degrees, 4 views); d4 (all 8 rotations and mirrors). The probabilities of the views are "
               "averaged, so the map does not depend on how the scene is turned; the network runs 4 or 8 times "
               "(one call per batch). docs/benchmarks.md gives its gain and cost on a real scene.",
        "BANDS": "Optional mapping model band = raster band number, e.g. B2=1,B3=2,B4=3,B8=4,B12=5,DEM=6.",
        "MASK_LAYER": "Optional polygons (e.g. the inventory): only tiles touching them, "
                      "buffered by MASK_BUFFER, are run; the rest is written as no data.",
        "MASK_BUFFER": "Buffer around MASK_LAYER polygons.",
        "PROBABILITY_FORMAT": "float32 (0-1, NaN = no data) or uint8 (0-100, 255 = no data).",
        "MIN_AREA": "Polygons smaller than this (km2) are dropped from OUTPUT_POLYGONS.",
        "SIMPLIFY": "Douglas-Peucker tolerance (m) for OUTPUT_POLYGONS; 0 keeps pixel edges.",
        "OUTPUT_PROBABILITY": "Glacier probability raster (tiled, compressed GeoTIFF). Optional when "
                              "OUTPUT_MASK is given: skipped, it is made in a temporary file beside the mask.",
        "OUTPUT_MASK": "Glacier mask raster (uint8: 1 glacier, 0 not, 255 no data).",
        "OUTPUT_POLYGONS": "Glacier polygons (GeoPackage) with area_km2 on the ellipsoid.",
        "OUTPUT_MEMBERS": "Optional folder for each ensemble member's probability raster (member1_<model>.tif, "
                          "...; in PROBABILITY_FORMAT), in member order: the list (MEMBER_PROBABILITIES) is "
                          "what area_change takes as START_ENSEMBLE or END_ENSEMBLE for its uncertainty.",
        "DASK_SCHEDULER": DASK_HELP + " Here: the raster in blocks of tile rows, one task each "
                          "(the joined result is the same as a run here); DEVICE cuda asks for "
                          "workers with a GPU resource.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM", optional=True))
        self.addParameter(QgsProcessingParameterFile("MODEL", "Model file", fileFilter="Glacier Mapper model (*.gmm *.safetensors);;All files (*)"))
        self.addParameter(QgsProcessingParameterMultipleLayers("ENSEMBLE", "Other ensemble members (model files)",
                                                               QgsProcessing.SourceType.TypeFile, optional=True))
        self.addParameter(string_enum("DEVICE", "Device", DEVICES))
        self.addParameter(string_enum("PRECISION", "Precision", PRECISIONS))
        self.addParameter(string_enum("BACKEND", "CPU runtime", BACKENDS))
        self.addParameter(QgsProcessingParameterNumber("TILE_SIZE", "Tile size (px)", defaultValue=512, minValue=32, maxValue=4096))
        self.addParameter(QgsProcessingParameterNumber("OVERLAP", "Overlap (px)", defaultValue=128, minValue=0, maxValue=2048))
        self.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size", defaultValue=4, minValue=1, maxValue=512))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", "Threshold", QgsProcessingParameterNumber.Type.Double, None, True, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterString("BANDS", "Band mapping", optional=True))
        self.addParameter(string_enum("TTA", "Test-time augmentation", TTAS))
        self.addParameter(QgsProcessingParameterFeatureSource("MASK_LAYER", "Only near these polygons", [QgsProcessing.SourceType.TypeVectorPolygon], optional=True))
        buffer = QgsProcessingParameterDistance("MASK_BUFFER", "Buffer around the mask polygons", 500.0, "INPUT", minValue=0.0)
        buffer.setDefaultUnit(QgsUnitTypes.DistanceUnit.DistanceMeters)  # INPUT must be in a metric CRS anyway
        self.addParameter(buffer)
        self.addParameter(string_enum("PROBABILITY_FORMAT", "Probability format", PROBABILITY_FORMATS))
        self.addParameter(QgsProcessingParameterNumber("MIN_AREA", "Minimum polygon area (km2)", QgsProcessingParameterNumber.Type.Double, 0.01, False, 0.0))
        self.addParameter(QgsProcessingParameterNumber("SIMPLIFY", "Simplification tolerance (m)", QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_PROBABILITY", "Glacier probability", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_MASK", "Glacier mask", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT_POLYGONS", "Glacier polygons", QgsProcessing.SourceType.TypeVectorPolygon, optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_MEMBERS", "Ensemble members' probabilities",
                                                                  optional=True, createByDefault=False))
        self.add_dask_parameter()
        self.addOutput(QgsProcessingOutputMultipleLayers("MEMBER_PROBABILITIES", "Members' probability rasters"))
        self.addOutput(QgsProcessingOutputNumber("MEMBERS_USED", "Ensemble members used"))
        self.addOutput(QgsProcessingOutputNumber("GLACIER_AREA_KM2", "Glacier area (km2, planar)"))
        self.addOutput(QgsProcessingOutputString("DEVICE_USED", "Device used"))
        self.addOutput(QgsProcessingOutputString("PRECISION_USED", "Precision used"))
        self.addOutput(QgsProcessingOutputString("BACKEND_USED", "Runtime used"))

    def finish(self, parameters, context, outputs, params):
        prob_qml = "probability_percent.qml" if params.get("PROBABILITY_FORMAT") == "uint8" else "probability.qml"
        source = self.subject(parameters, context, "INPUT")
        # Polygons over the mask over the probability (translucent) over the imagery below.
        present(context, outputs, run_name("Glaciers mapped", source), [
            ("OUTPUT_POLYGONS", "glacier_polygons.qml", f"Glacier polygons - {source}"),
            ("OUTPUT_MASK", "mask.qml", f"Glacier mask - {source}"),
            ("OUTPUT_PROBABILITY", prob_qml, f"Glacier probability - {source}", PROBABILITY_OPACITY)])
