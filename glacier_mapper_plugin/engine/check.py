"""`python -m glacier_mapper_plugin.engine.check`: can this environment run every step?
Imports what the steps import and prints the versions (exit 1 with the missing one)."""
import importlib
import sys

MODULES = ("numpy", "scipy", "rasterio", "pyogrio", "shapely", "pyproj", "matplotlib", "torch",
           "segmentation_models_pytorch", "safetensors", "pystac_client", "xgboost")


def main() -> int:
    versions = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            print(f"missing {name}: {err}")
            return 1
        versions.append(f"{name} {getattr(module, '__version__', '?')}")
    from . import steps  # noqa: F401 (the steps import too)
    print(f"Python {sys.version.split()[0]}: " + ", ".join(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
