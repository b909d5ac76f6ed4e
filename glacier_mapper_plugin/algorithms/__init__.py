"""Processing algorithms: each declares its parameters and help; the engine runs it (base.py)."""
from .acquire_imagery import AcquireImageryAlgorithm
from .area_change import AreaChangeAlgorithm
from .cross_validate import CrossValidateAlgorithm
from .evaluate_segmentation import EvaluateSegmentationAlgorithm
from .install_engine import InstallEngineAlgorithm
from .mass_balance import PredictMassBalanceAlgorithm, TrainMassBalanceAlgorithm
from .segment_glaciers import SegmentGlaciersAlgorithm
from .synthetic_region import SyntheticRegionAlgorithm
from .train_model import TrainModelAlgorithm

# Pipeline order, as they appear in the toolbox's groups.
ALGORITHMS = [SyntheticRegionAlgorithm, AcquireImageryAlgorithm, TrainModelAlgorithm, CrossValidateAlgorithm,
              SegmentGlaciersAlgorithm, EvaluateSegmentationAlgorithm, AreaChangeAlgorithm,
              TrainMassBalanceAlgorithm, PredictMassBalanceAlgorithm, InstallEngineAlgorithm]
