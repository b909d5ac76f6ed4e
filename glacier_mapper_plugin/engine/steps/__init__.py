"""The engine's steps: one per algorithm, from plain parameters (paths, numbers, strings;
keyed by the algorithm's parameter names) to files and a result dictionary.

QGIS (through `algorithms/`) and the command line (`cli.py`) call these with the same
names; feature sources arrive as vector files (QGIS exports layers, selections and memory
layers to a temporary GeoPackage), feature sinks leave as GeoPackages (QGIS copies them into
the sink the user chose).

One module per domain of `core/`, each registering its steps with `@step(name)`; a new
algorithm adds a function to its domain's module and nothing here.
"""
from . import change, imagery, massbalance, segmentation  # noqa: F401 (each registers its steps)
from .common import STEPS

__all__ = ["STEPS"]
