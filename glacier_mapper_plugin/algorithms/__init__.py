"""Processing algorithms: each reads parameters, calls one core function, returns outputs."""
from .synthetic_region import SyntheticRegionAlgorithm

ALGORITHMS = [SyntheticRegionAlgorithm]
