"""`python -m glacier_mapper_plugin.engine.check`: can this environment run every step?
Imports what the steps import and prints the versions (exit 1 with the missing one)."""
import importlib
import sys

MODULES = ("numpy", "scipy", "rasterio", "pyogrio", "shapely", "pyproj", "matplotlib", "torch",
           "segmentation_models_pytorch", "safetensors", "pystac_client", "xgboost", "onnxruntime", "openvino",
           "onnx")  # onnx: imported by torch's exporter and onnxruntime's quantiser when they run


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
    try:
        print(self_test())
    except Exception as err:  # noqa: BLE001 (whatever breaks, the user is told which device failed)
        print(f"self-test failed: {type(err).__name__}: {err}")
        return 1
    return 0


def self_test() -> str:
    """A U-Net forward pass on the device the algorithms will pick (DEVICE auto): proves torch,
    segmentation-models-pytorch and the device work together, and says which device it is."""
    import platform

    import segmentation_models_pytorch as smp
    import torch

    from ..core.segmentation.segment import pick_device, torch_build
    device = pick_device("auto")
    net = smp.Unet("resnet18", encoder_weights=None, in_channels=6, classes=1).to(device).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 6, 64, 64, device=device))
    if tuple(out.shape) != (1, 1, 64, 64) or not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"the U-Net gave {tuple(out.shape)} with non-finite values on {device}")
    name = (torch.cuda.get_device_name(0) if device == "cuda" else "Apple GPU" if device == "mps"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    return f"self-test passed: a U-Net ran on {device} ({name}); {torch_build()}"


if __name__ == "__main__":
    sys.exit(main())
