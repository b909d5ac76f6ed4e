"""Processing algorithms: each reads parameters, calls one core function, returns outputs."""
from .segment_glaciers import SegmentGlaciersAlgorithm
from .synthetic_region import SyntheticRegionAlgorithm

ALGORITHMS = [SyntheticRegionAlgorithm, SegmentGlaciersAlgorithm]
