"""The model file: safetensors tensors plus a JSON header, in one file.

Loading never unpickles (a model from the internet must not be able to run code): the
tensors are read by safetensors and the header is plain JSON stored in the safetensors
metadata under the key "glacier_mapper". The header carries everything needed to use the
model: architecture, encoder, ordered input bands, per-band normalisation, pixel size,
patch size, threshold, training summary and metrics.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..io import atomic_output

FORMAT = "glacier-mapper-model"
FORMAT_VERSION = 1
HEADER_KEY = "glacier_mapper"
ARCHITECTURES = ("Unet",)


class ModelFileError(ValueError):
    """A model file that cannot be used; the message says what is wrong with it."""


@dataclass
class ModelHeader:
    bands: list[str]                  # raster bands, decoded
    mean: list[float]                 # per channel: the bands, then the features
    std: list[float]
    architecture: str = "Unet"
    encoder: str = "resnet34"
    classes: int = 1
    pixel_size_m: float = 10.0
    patch_size: int = 256
    threshold: float = 0.5
    temperature: float = 1.0          # probability = sigmoid(logit / temperature), calibrated on the validation glaciers
    features: list[str] = field(default_factory=list)  # derived inputs after the bands (core.segmentation.features)
    units: dict[str, str] = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def validate(self, source: str = "model file") -> "ModelHeader":
        if self.format != FORMAT:
            raise ModelFileError(f"{source}: not a Glacier Mapper model (format {self.format!r})")
        if self.format_version > FORMAT_VERSION:
            raise ModelFileError(f"{source}: format version {self.format_version} is newer than "
                                 f"this plugin reads ({FORMAT_VERSION}): update Glacier Mapper")
        if self.architecture not in ARCHITECTURES:
            raise ModelFileError(f"{source}: architecture {self.architecture!r} is not supported "
                                 f"(supported: {', '.join(ARCHITECTURES)})")
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ModelFileError(f"{source}: band list {self.bands} is empty or repeats a band")
        channels = len(self.bands) + len(self.features)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ModelFileError(f"{source}: normalisation has {len(self.mean)} means and "
                                 f"{len(self.std)} stds for {len(self.bands)} bands and {len(self.features)} features")
        from .features import check, parse
        try:
            if parse(",".join(self.features)) != list(self.features):
                raise ValueError(f"FEATURES: {self.features} repeats a feature")
            check(self.features, self.bands)
        except ValueError as err:
            raise ModelFileError(f"{source}: {err}") from None
        if any(not (s > 0) for s in self.std):
            raise ModelFileError(f"{source}: a band has a non-positive std: {self.std}")
        if not 0 < self.threshold < 1:
            raise ModelFileError(f"{source}: threshold {self.threshold} is not in (0, 1)")
        if not 0.05 <= self.temperature <= 20:
            raise ModelFileError(f"{source}: temperature {self.temperature} is not in [0.05, 20]")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model file") -> "ModelHeader":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFileError(f"{source}: header is not valid JSON ({err})") from None
        known = set(cls.__dataclass_fields__)
        missing = {"bands", "mean", "std"} - set(data)
        if missing:
            raise ModelFileError(f"{source}: header lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in known}).validate(source)


def build_network(header: ModelHeader, encoder_weights: str | None = None):
    """The torch module the header describes, with random weights (or smp's pretrained
    encoder weights, e.g. imagenet, whose first convolution smp adapts to the band count)."""
    import segmentation_models_pytorch as smp
    try:
        return smp.Unet(encoder_name=header.encoder, encoder_weights=encoder_weights,
                        in_channels=len(header.bands) + len(header.features), classes=header.classes)
    except (KeyError, ValueError) as err:
        raise ModelFileError(f"encoder {header.encoder!r} is not available in "
                             f"segmentation-models-pytorch: {err}") from None


def imagenet_network(header: ModelHeader, progress=None):
    """A U-Net with smp's ImageNet encoder. smp fetches the weights from the Hugging Face hub
    on first use and keeps them in the hub's cache (HF_HUB_CACHE), where the user can see,
    copy or pre-seed them for machines without internet."""
    from huggingface_hub import constants, hf_hub_download
    from segmentation_models_pytorch.encoders import encoders
    settings = encoders.get(header.encoder, {}).get("pretrained_settings", {}).get("imagenet")
    if not settings:
        raise ValueError(f"ENCODER_WEIGHTS: segmentation-models-pytorch has no ImageNet weights "
                         f"for {header.encoder}")
    try:
        path = hf_hub_download(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    except Exception as err:  # offline, proxy, hub down: all say the same to the user
        raise ValueError(
            f"ENCODER_WEIGHTS=imagenet: the {header.encoder} ImageNet weights ({settings['repo_id']}) "
            f"could not be fetched from the Hugging Face hub ({type(err).__name__}) and are not in "
            f"its cache {constants.HF_HUB_CACHE}: connect to the internet once, copy that cache "
            "from a machine that has them, or use ENCODER_WEIGHTS=none") from None
    if progress is not None:
        progress.info(f"ImageNet encoder weights of {header.encoder}: {path}")
    return build_network(header, "imagenet")


# Tensors that travel with the network but are not its weights (the int8 calibration
# windows, core.segmentation.quantisation) are named under this prefix.
EXTRA_PREFIX = "quantisation."


def save_model(path, network, header: ModelHeader, extra: dict | None = None) -> Path:
    """Write the network's weights, `extra` tensors (names under EXTRA_PREFIX) and the header
    to one file, atomically."""
    from safetensors.torch import save_file
    header.validate(str(path))
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    for name, tensor in (extra or {}).items():
        if not name.startswith(EXTRA_PREFIX):
            raise ValueError(f"extra tensor {name!r} must be named under {EXTRA_PREFIX!r}")
        tensors[name] = tensor.detach().cpu().contiguous()
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: header.to_json()})
    return Path(path)


def read_header(path) -> ModelHeader:
    """The header alone (cheap: no tensor is read)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for bad files
        raise ModelFileError(f"{path} is not a readable safetensors model file (corrupt or "
                             f"truncated?): {err}") from None
    if HEADER_KEY not in meta:
        raise ModelFileError(f"{path} is a safetensors file without a Glacier Mapper header")
    return ModelHeader.from_json(meta[HEADER_KEY], str(path))


def load_model(path, device="cpu"):
    """(network in eval mode, header). Checks the tensors match the declared architecture."""
    from safetensors.torch import load_file
    header = read_header(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as err:
        raise ModelFileError(f"{path}: tensors cannot be read (corrupt or truncated?): {err}") from None
    tensors = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    import torch
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        network = build_network(header)
    try:
        network.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise ModelFileError(f"{path}: weights do not fit a {header.architecture} with a "
                             f"{header.encoder} encoder and {len(header.bands)} input bands: "
                             + " ".join(first)) from None
    return network.to(device).eval(), header


def new_model(path, bands, mean=None, std=None, encoder="resnet34", seed=0, **header_fields):
    """An untrained model file of any band set (tests, and the start of training)."""
    import torch
    torch.manual_seed(seed)
    header = ModelHeader(bands=list(bands), mean=list(mean or [0.0] * len(bands)),
                         std=list(std or [1.0] * len(bands)), encoder=encoder, **header_fields)
    network = build_network(header.validate())
    network.eval()
    save_model(path, network, header)
    return network, header
