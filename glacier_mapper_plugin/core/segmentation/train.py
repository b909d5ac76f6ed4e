"""Training a glacier U-Net from imagery and an inventory (Diaconu & Bamber 2023, improved).

Glacier-centred patches, cut once into an on-disk cache and streamed by a torch DataLoader
whose workers read, standardise and augment them (D4 per patch); optional derived inputs
(FEATURES: indices and terrain, core.segmentation.features) cut with the bands; per-channel
standardisation from the training patches only (stored in the model), merged from
per-patch moments; BCE (+ soft Dice) over valid pixels only (no data, cloud and shadow add
nothing); a cosine learning-rate decay. Validation is one spatial block of glaciers whose
pixels no training patch's loss sees; the checkpoint with the best mean per-glacier
validation IoU is kept, PATIENCE epochs without a better one stop the run; the kept model's
probabilities are calibrated on the validation glaciers (temperature scaling) and its IoU
is compared with a threshold baseline on the same glaciers. Every epoch writes a resume
file (in the user's cache), so a stopped run continues from its last finished epoch. All
randomness derives from SEED (per epoch), so a run is reproducible on the CPU and a
resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from ..imagery.bands import canonical
from ..io import atomic_output, cache_dir, remove_partials
from ..imagery.quality import QUALITY_NAMES
from .plausibility import validation_warning
from ..labels import Inventory
from .baseline import threshold_baseline
from .calibration import calibrate, sample_pixels
from .metrics import add, confusion, scores
from .features import check as check_features
from .weighting import batch_weights, loss_weights, parse as parse_weighting
from . import quantisation
from .model_file import ModelHeader, build_network, save_model
from .patches import PatchCache, band_statistics, extract_patches
from ..progress import Progress
from .segment import MASK_BAND, PROBABILITY_BAND, pick_device


@dataclass
class TrainOptions:
    patch_size: int = 256
    encoder: str = "resnet34"
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    seed: int = 42
    val_fraction: float = 0.2
    quality: str = "auto"
    bands: list | None = None            # None: all bands in file order (+ DEM)
    mapping: dict | None = None          # explicit name -> band number
    train_glaciers: list | None = None   # inventory index+1 to train on (None: all)
    val_glaciers: list | None = None     # explicit validation glaciers (None: VAL_FRACTION)
    encoder_weights: str = "none"        # none | imagenet | a .gmm model to fine-tune
    workers: int | None = None           # DataLoader worker processes (None: by device)
    patch_cache: str | None = None       # folder of the patch cache (None: the user's cache)
    keep_patches: bool = False           # keep the patch cache after a successful run
    loss: str = "bce+dice"               # bce | bce+dice
    schedule: str = "cosine"             # cosine | constant learning rate
    features: tuple = ()                 # derived inputs (core.segmentation.features): NDSI, SLOPE, ...
    patience: int = 10                   # epochs without a better validation IoU before stopping (0: never)
    weighting: tuple = ()                # loss weights (core.segmentation.weighting): dark


@dataclass
class TrainResult:
    model: Path
    header: ModelHeader
    history: list = field(default_factory=list)
    best_epoch: int = 0
    resumed_from: int = 0


def default_bands(raster, dem_path=None) -> list[str]:
    """All bands of the raster in file order except the quality band, plus DEM if given."""
    with rasterio.open(raster) as src:
        names = [canonical(d) or f"band{i}" for i, d in enumerate(src.descriptions, start=1)]
    names = [n for n in names if n not in QUALITY_NAMES]
    if dem_path and "DEM" not in names:
        names.append("DEM")
    return names


def check_training_rasters(rasters, patch_size: int) -> None:
    """Before any patch is cut: imagery, not predictions, and patches that fit the rasters
    (a patch larger than every raster is mostly padding: a model trained on it learns nothing)."""
    sides = []
    for r in rasters:
        with rasterio.open(r) as src:
            names = " ".join(d or "" for d in src.descriptions).lower()
            if PROBABILITY_BAND in names or MASK_BAND in names:
                raise ValueError(f"INPUT: {r} is a prediction of segment_glaciers, not imagery: give the "
                                 "Sentinel-2 chips or scenes the inventory was drawn on")
            sides.append(min(src.height, src.width))
    if sides and patch_size > max(sides):
        fit = max(32, max(sides) // 32 * 32)
        raise ValueError(f"PATCH_SIZE {patch_size} is larger than every INPUT raster (the largest is "
                         f"{max(sides)} pixels on its short side): patches would be mostly padding; "
                         f"choose PATCH_SIZE {fit} or less")


def split_glaciers(glaciers, fraction: float, seed: int, centres=None):
    """(train, validation) glacier ids. With `centres` (glacier id -> (x, y) km, from
    glacier_centres_km) the validation glaciers are one spatial block: a seeded glacier and
    its nearest neighbours, so validation measures glaciers the model has not seen the
    surroundings of; without, a seeded random share."""
    glaciers = sorted(set(int(g) for g in glaciers))
    if len(glaciers) < 2 or fraction <= 0:
        return glaciers, []
    rng = np.random.default_rng([seed, 7919])
    n_val = min(max(1, int(round(fraction * len(glaciers)))), len(glaciers) - 1)
    if centres is None:
        val = sorted(int(g) for g in rng.choice(glaciers, size=n_val, replace=False))
    else:
        xy = np.array([centres[g] for g in glaciers], float)
        first = xy[rng.integers(len(glaciers))]
        nearest = np.argsort(np.hypot(*(xy - first).T), kind="stable")[:n_val]
        val = sorted(glaciers[i] for i in nearest)
    return [g for g in glaciers if g not in val], val


def glacier_centres_km(inventory: Inventory) -> dict[int, tuple[float, float]]:
    """Glacier id (index + 1) -> centroid in km on a local equirectangular plane: distances
    to rank neighbours by, whatever the inventory's CRS."""
    from ..geodesy import to_lonlat
    lonlat = {k + 1: to_lonlat(g, inventory.crs).centroid for k, g in enumerate(inventory.geometries)
              if g is not None and not g.is_empty}
    if not lonlat:
        return {}
    scale = np.cos(np.radians(np.mean([c.y for c in lonlat.values()])))
    return {g: (c.x * 111.32 * scale, c.y * 110.57) for g, c in lonlat.items()}


def hidden_from_training(patches, train_idx, val_idx, size: int) -> dict[int, list]:
    """Training patch index -> the rectangles (r0, r1, c0, c1, in its own pixels) it shares
    with validation patches of the same raster. The loss ignores them: neighbouring patches
    overlap by half, and a training patch reaching over a validation glacier would teach
    the model the very pixels it is validated on."""
    if not len(val_idx) or not len(train_idx):
        return {}
    rec = np.array([(p.source, p.row, p.col) for p in patches], int)
    hidden: dict[int, list] = {}
    va = rec[val_idx]
    for i in train_idx:
        s, r, c = rec[i]
        v = va[(va[:, 0] == s) & (np.abs(va[:, 1] - r) < size) & (np.abs(va[:, 2] - c) < size)]
        if len(v):
            hidden[int(i)] = [(int(max(vr - r, 0)), int(min(vr - r + size, size)),
                               int(max(vc - c, 0)), int(min(vc - c + size, size))) for _, vr, vc in v]
    return hidden


def standardise(x: np.ndarray, valid: np.ndarray, mean, std) -> np.ndarray:
    """(x - mean) / std per band, float32; invalid pixels 0 (the band mean), as at inference."""
    out = ((x - np.asarray(mean, np.float32)[None, :, None, None])
           / np.asarray(std, np.float32)[None, :, None, None]).astype(np.float32)
    out[~np.broadcast_to(valid[:, None], out.shape)] = 0.0
    return out


def d4(arrays, k: int, flip: bool):
    """The same dihedral transform (rot90 k times, then an optional flip) on each array."""
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def masked_bce(logits, target, valid, weight=None):
    """Binary cross-entropy averaged over valid pixels only: a cloud pixel adds nothing.
    `weight` (WEIGHTING) scales each pixel's term; the mean stays over valid pixels, so the
    loss keeps its scale."""
    import torch.nn.functional as F
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    count = valid.float()
    return (loss * (count if weight is None else count * weight)).sum() / count.sum().clamp(min=1.0)


def masked_dice(logits, target, valid):
    """Soft Dice loss over the valid pixels of the whole batch: it counts glacier pixels
    missed and added alike whatever the glacier share, where BCE favours the majority class
    (a batch of mostly rock pushes thin tongues below 0.5)."""
    import torch
    prob = torch.sigmoid(logits) * valid
    target = target * valid
    inter = (prob * target).sum()
    return 1.0 - (2.0 * inter + 1.0) / (prob.sum() + target.sum() + 1.0)


def training_loss(kind: str):
    if kind == "bce":
        return masked_bce
    if kind == "bce+dice":
        return lambda logits, target, valid, weight=None: (masked_bce(logits, target, valid, weight)
                                                           + masked_dice(logits, target, valid))
    raise ValueError(f"LOSS must be bce or bce+dice, not {kind!r}")


def learning_rate(base: float, schedule: str, step: int, steps: int) -> float:
    """The learning rate of optimisation step `step` of `steps`: cosine decay to 1 % of the
    base (the last epochs refine instead of jumping between minima, so the epoch kept by
    validation matters less), or constant. A function of the step, not a scheduler's state,
    so a resumed run continues on the same curve."""
    if schedule == "constant":
        return base
    if schedule != "cosine":
        raise ValueError(f"SCHEDULE must be cosine or constant, not {schedule!r}")
    t = min(max(step / max(steps, 1), 0.0), 1.0)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * t)))


class PatchDataset:
    """Map-style dataset over a patch cache: item (index, k, flip) -> standardised, D4-
    transformed (x, y, valid). Runs in DataLoader workers; randomness comes with the item
    (drawn in the main process from SEED), so results do not depend on the worker count."""

    def __init__(self, cache: PatchCache, mean, std, hidden=None):
        self.cache, self.mean, self.std, self.hidden = cache, mean, std, hidden or {}

    def __len__(self):
        return len(self.cache)

    def __getitem__(self, item):
        i, k, flip = item
        x, y, v = self.cache.read(i)
        for r0, r1, c0, c1 in self.hidden.get(i, ()):  # pixels validation is measured on
            v[r0:r1, c0:c1] = False
        x = standardise(x[None], v[None], self.mean, self.std)[0]
        x, y, v = d4([x, y, v], k, flip)
        return x, y.astype(np.float32), v


class EpochBatches:
    """Batches of (index, k, flip) for one epoch, shuffled from (seed, epoch): a batch
    sampler that persistent workers keep using from epoch to epoch."""

    def __init__(self, indices, batch_size, seed, augment=True):
        self.indices, self.batch_size, self.seed, self.augment = np.asarray(indices, int), batch_size, seed, augment
        self.epoch = 1

    def __len__(self):
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        if not self.augment:  # evaluation: in order, untransformed
            for b0 in range(0, len(self.indices), self.batch_size):
                yield [(int(i), 0, False) for i in self.indices[b0:b0 + self.batch_size]]
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.indices)
        ks, flips = rng.integers(4, size=len(order)), rng.integers(2, size=len(order))
        for b0 in range(0, len(order), self.batch_size):
            yield [(int(order[j]), int(ks[j]), bool(flips[j]))
                   for j in range(b0, min(b0 + self.batch_size, len(order)))]


def default_workers(device: str) -> int:
    """Loader processes: on the CPU one (reading overlaps compute; more would steal cores
    from the training step), on a GPU enough to keep it fed. None in a daemon process (a
    Dask worker under its nanny), which may not start children."""
    import multiprocessing
    if multiprocessing.current_process().daemon:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.startswith("cuda"):
        return max(1, min(8, cores - 1))
    return 1 if cores >= 2 else 0


def patch_loader(cache, mean, std, batches: EpochBatches, device: str, workers: int, hidden=None):
    import torch
    return torch.utils.data.DataLoader(
        PatchDataset(cache, mean, std, hidden), batch_sampler=batches, num_workers=workers,
        pin_memory=device.startswith("cuda"), persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None)


def evaluate_patches(network, loader, glaciers, device, autocast_dtype=None, pixels=None):
    """Per-glacier IoU (mean over glaciers) and pooled confusion over a loader's patches
    (in order; `glaciers` gives each one's glacier). With `pixels` (a list), a seeded sample
    of each patch's valid (logit, label) pairs is appended to it, for calibration."""
    import torch
    from scipy.special import expit  # the logistic without overflow on confident logits
    per_glacier: dict[int, dict] = {}
    total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    network.eval()
    j = 0
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for x, y, v in loader:
            x = x.to(device, non_blocking=True, memory_format=_memory_format(device))
            with torch.autocast(device.split(":")[0], dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                logits = network(x).float()[:, 0].cpu().numpy()
            prob = expit(logits)
            for b in range(len(prob)):
                if pixels is not None:
                    pixels.append(sample_pixels(logits[b], y[b].numpy(), v[b].numpy(), rng))
                c = confusion(prob[b] >= 0.5, y[b].numpy() > 0, v[b].numpy())
                g = glaciers[j]
                per_glacier[g] = add(per_glacier.get(g, {}), c)
                total = add(total, c)
                j += 1
    ious = [scores(c)["iou"] for c in per_glacier.values()]
    ious = [v for v in ious if np.isfinite(v)]
    return (float(np.mean(ious)) if ious else float("nan")), total


def _memory_format(device: str):
    """channels_last on CUDA (tensor cores read NHWC); the CPU's default is faster here."""
    import torch
    return torch.channels_last if device.startswith("cuda") else torch.contiguous_format


def _config_hash(rasters, inventory, bands, opts: TrainOptions) -> str:
    cfg = {k: v for k, v in asdict(opts).items()
           if k not in ("epochs", "device", "workers", "patch_cache", "keep_patches")}
    from ..identity import file_key, fingerprint
    # Files by path, size and time, outlines by content: a stopped training never resumes
    # onto an input replaced at the same path (or an inventory edited under the same ids).
    cfg.update(rasters=[file_key(r) for r in rasters], bands=bands,
               glaciers=[str(i) for i in inventory.ids],
               outlines=hashlib.sha256("".join(fingerprint(g) for g in inventory.geometries).encode()).hexdigest())
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resume_path(output_model) -> Path:
    """Where a stopped training keeps its last epoch: in the cache, not beside the output (a
    stopped or cancelled run leaves nothing in the output folder), keyed by the output's
    absolute path; the settings it belongs to are checked inside."""
    p = Path(output_model)
    key = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "resume" / f"{p.name}-{key}.resume"


def _save_resume(path, network, optimizer, best_state, meta):
    import torch
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt = optimizer.state_dict()
    for pid, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"opt.{pid}.{name}"] = value.detach().cpu().contiguous() if torch.is_tensor(value) \
                else torch.tensor(value)
    meta = dict(meta, param_groups=opt["param_groups"])
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"resume": json.dumps(meta)})


def _load_resume(path, network, optimizer, config_hash, device):
    from safetensors import safe_open
    from safetensors.torch import load_file
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["resume"])
        if meta.get("config") != config_hash:
            return "belongs to other settings (other inputs, bands or options)"
        tensors = load_file(str(path), device=str(device))
    except Exception as err:  # noqa: BLE001 (an unreadable resume file is ignored, never trusted)
        return f"cannot be read ({type(err).__name__}: a run stopped while writing it, or not a resume file)"
    network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v.cpu() for k, v in tensors.items() if k.startswith("best.")}
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta, best


def initial_weights(network, header: ModelHeader, weights: str, progress: Progress):
    """ENCODER_WEIGHTS: none (random), imagenet (smp's published encoder weights, fetched
    from the Hugging Face hub on first use into its cache) or a .gmm model to fine-tune
    (same encoder and bands; a model of one region adapted to another)."""
    weights = (weights or "none").strip()
    if weights.lower() == "none":
        return network
    if weights.lower() == "imagenet":
        from .model_file import imagenet_network
        return imagenet_network(header, progress)
    from .model_file import ModelFileError, load_model
    try:
        base, _ = load_model(weights)
    except ModelFileError as err:
        raise ValueError(f"ENCODER_WEIGHTS: {err}") from None
    network.load_state_dict(base.state_dict())
    progress.info(f"fine-tuning from {weights} (its band normalisation is kept)")
    return network


def train_model(rasters, inventory: Inventory, output_model, dem_path=None,
                options: TrainOptions | None = None, progress: Progress | None = None,
                patches: PatchCache | None = None) -> TrainResult:
    """Train, validate by glacier, keep the best epoch, write the model file."""
    import torch
    opts = options or TrainOptions()
    progress = progress or Progress()
    t0 = time.perf_counter()
    rasters = [str(r) for r in rasters]
    if not rasters:
        raise ValueError("INPUT: give at least one imagery raster")
    if opts.patch_size < 32 or opts.patch_size % 32:
        raise ValueError(f"PATCH_SIZE must be a multiple of 32 (>= 32), not {opts.patch_size}")
    if opts.epochs < 1 or opts.batch_size < 1 or not opts.learning_rate > 0:
        raise ValueError("EPOCHS and BATCH_SIZE must be >= 1 and LEARNING_RATE > 0")
    if opts.patience < 0:
        raise ValueError(f"PATIENCE must be 0 (never stop early) or a number of epochs, not {opts.patience}")
    loss_fn = training_loss(opts.loss)
    learning_rate(opts.learning_rate, opts.schedule, 0, 1)  # an unknown schedule refused before any work
    weighting = parse_weighting(",".join(opts.weighting))
    device = pick_device(opts.device)
    bands = list(opts.bands) if opts.bands else default_bands(rasters[0], dem_path)
    features = list(opts.features)
    check_features(features, bands)
    base_header = _fine_tuning_header(opts.encoder_weights, opts.encoder, bands, features)
    progress.info(f"bands: {', '.join(bands)}" + (f"; features: {', '.join(features)}" if features else "")
                  + f"; device {device}")

    cache = patches or extract_patches(rasters, inventory, bands, opts.patch_size, dem_path,
                                       opts.mapping, opts.quality, progress=progress,
                                       cache_root=opts.patch_cache, features=features)
    of = np.array([p.glacier for p in cache.patches], int)
    glaciers = sorted(set(of.tolist()))
    if opts.train_glaciers is not None:
        glaciers = [g for g in glaciers if g in set(opts.train_glaciers)]
    if opts.val_glaciers is not None:
        val_g = sorted(set(opts.val_glaciers) & set(glaciers))
        train_g = [g for g in glaciers if g not in val_g]
    else:
        train_g, val_g = split_glaciers(glaciers, opts.val_fraction, opts.seed, glacier_centres_km(inventory))
    train_idx = np.nonzero(np.isin(of, train_g))[0]
    val_idx = np.nonzero(np.isin(of, val_g))[0]
    if train_idx.size == 0:
        raise ValueError("no training patch: the inventory's glaciers do not overlap INPUT")
    hidden = hidden_from_training(cache.patches, train_idx, val_idx, cache.patch_size)
    progress.info(f"{len(train_idx)} training patches on {len(train_g)} glaciers, "
                  f"{len(val_idx)} validation patches on {len(val_g)} glaciers"
                  + (f" ({len(hidden)} training patches reach over them: those pixels are left out of "
                     f"the loss)" if hidden else ""))

    if base_header is not None:
        mean, std = base_header.mean, base_header.std
    else:
        mean, std = band_statistics(cache.moments[train_idx])
    weights = loss_weights(weighting, cache, train_idx, mean, std, opts.seed)
    if weights:
        progress.info("loss weights: " + ", ".join(f"{k} {v:.3g}" for k, v in weights.items()
                                                   if isinstance(v, float)))
    with rasterio.open(rasters[0]) as src:
        pixel = abs(src.transform.a)
    header = ModelHeader(bands=bands, features=features, mean=mean, std=std, encoder=opts.encoder,
                         pixel_size_m=pixel, patch_size=opts.patch_size,
                         units={b: ("m" if b == "DEM" else "reflectance") for b in bands})
    torch.manual_seed(opts.seed)
    network = build_network(header.validate())
    network = initial_weights(network, header, opts.encoder_weights, progress)
    network = network.to(device, memory_format=_memory_format(device))
    optimizer = torch.optim.AdamW(network.parameters(), lr=opts.learning_rate,
                                  weight_decay=opts.weight_decay)
    amp_dtype = None
    if device == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    config = _config_hash(rasters, inventory, bands, opts)
    resume = resume_path(output_model)
    history, best_iou, best_epoch, start = [], -1.0, 0, 1
    best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    if resume.exists():
        loaded = _load_resume(resume, network, optimizer, config, device)
        if not isinstance(loaded, str):
            meta, best_state = loaded
            history, best_iou, best_epoch = meta["history"], meta["best_iou"], meta["best_epoch"]
            start = meta["epoch"] + 1
            progress.info(f"resuming after epoch {meta['epoch']} from {resume.name}")
        else:
            progress.warning(f"{resume.name} {loaded}: starting afresh")

    workers = default_workers(device) if opts.workers is None else int(opts.workers)
    batches = EpochBatches(train_idx, opts.batch_size, opts.seed)
    loader = patch_loader(cache, mean, std, batches, device, workers, hidden)
    val_loader = patch_loader(cache, mean, std, EpochBatches(val_idx, opts.batch_size, opts.seed,
                                                             augment=False), device, 0)
    val_glaciers = of[val_idx].tolist()
    fmt = _memory_format(device)
    timing = {"step": 0.0, "wait": 0.0, "patches": 0}
    for epoch in range(start, opts.epochs + 1):
        network.train()
        batches.epoch = epoch
        losses = []
        tick = time.perf_counter()
        for b, (x, y, v) in enumerate(loader):
            progress.check()
            got = time.perf_counter()
            x = x.to(device, non_blocking=True, memory_format=fmt)
            y, v = y.to(device, non_blocking=True), v.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(opts.learning_rate, opts.schedule,
                                            (epoch - 1) * len(batches) + b, opts.epochs * len(batches))
            with torch.autocast(device, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = network(x)[:, 0]
            loss = loss_fn(logits.float(), y, v, batch_weights(weights, x, y, v))
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))  # syncs: the step is done when timed
            tock = time.perf_counter()
            timing["wait"] += got - tick
            timing["step"] += tock - got
            timing["patches"] += len(x)
            tick = tock
            progress.update(((epoch - 1) + (b + 1) / len(batches)) / opts.epochs)
        val_iou, _ = evaluate_patches(network, val_loader, val_glaciers, device, amp_dtype) \
            if len(val_idx) else (float("nan"), None)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "val_iou": val_iou}
        history.append(entry)
        improved = not len(val_idx) or (np.isfinite(val_iou) and val_iou > best_iou)
        if improved:
            best_iou, best_epoch = (val_iou if np.isfinite(val_iou) else best_iou), epoch
            best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        progress.info(f"epoch {epoch}/{opts.epochs}: loss {entry['loss']:.4f}, validation IoU "
                      f"per glacier {val_iou:.4f}" + (" (best)" if improved else ""))
        _save_resume(resume, network, optimizer, best_state,
                     dict(config=config, epoch=epoch, history=history, best_iou=best_iou,
                          best_epoch=best_epoch))
        if opts.patience and len(val_idx) and epoch - best_epoch >= opts.patience and epoch < opts.epochs:
            progress.info(f"stopping early after epoch {epoch}: no better validation IoU for "
                          f"{opts.patience} epochs (PATIENCE); epoch {best_epoch} is kept")
            break
    del loader  # ends the persistent workers

    network.load_state_dict(best_state)
    network.eval()
    metrics = {"best_epoch": best_epoch, "val_iou_per_glacier": best_iou if best_iou >= 0 else None}
    if len(val_idx):
        pixels: list = []
        _, conf = evaluate_patches(network, val_loader, val_glaciers, device, amp_dtype, pixels)
        metrics["validation"] = scores(conf)
        calibration = calibrate(np.concatenate([p[0] for p in pixels]), np.concatenate([p[1] for p in pixels]))
        header.temperature = calibration["temperature"]
        metrics["calibration"] = calibration
        progress.info(f"calibration on the validation glaciers: temperature {calibration['temperature']:.3f}, "
                      f"expected calibration error {calibration['ece_before']:.3f} -> {calibration['ece']:.3f}; "
                      f"the probabilities lean {calibration['lean']:+.3f} to glacier")
    baseline = threshold_baseline(cache, train_idx, val_idx, val_glaciers, opts.seed)
    if baseline:
        metrics["baseline"] = baseline
        progress.info(f"{baseline['index']} threshold {baseline['threshold']:.2f} (chosen on the training patches): "
                      f"validation IoU per glacier {baseline['val_iou']:.4f}, the model {best_iou:.4f}")
    warning = validation_warning(best_iou if len(val_idx) and best_iou >= 0 else None, baseline)
    if warning:
        metrics["warnings"] = [warning]  # travels with the model: segment_glaciers repeats it
        progress.warning(warning)
    header.metrics = metrics
    busy = timing["step"] / max(timing["step"] + timing["wait"], 1e-9)
    header.training = dict(
        rasters=[Path(r).name for r in rasters], patches_train=int(len(train_idx)),
        patches_val=int(len(val_idx)), glaciers_train=len(train_g), glaciers_val=len(val_g),
        epochs=opts.epochs, epochs_run=len(history), batch_size=opts.batch_size,
        learning_rate=opts.learning_rate, loss=opts.loss, schedule=opts.schedule, patience=opts.patience,
        weighting={k: v for k, v in weights.items() if not k.startswith("_")} if weights else None,
        seed=opts.seed, device=device, history=history, encoder_weights=opts.encoder_weights,
        loader_workers=workers, step_share=round(busy, 4), config=config, patches=cache.folder.name,
        patches_per_s=round(timing["patches"] / max(timing["step"] + timing["wait"], 1e-9), 2),
        seconds=round(time.perf_counter() - t0, 1))
    # windows for PRECISION int8 travel with the model, so its int8 graph does not depend on the input
    samples = quantisation.sample(rasters, inventory, bands, mean, std, train_g, val_g, opts.seed,
                                  dem_path=dem_path, mapping=opts.mapping, quality=opts.quality, features=features)
    save_model(output_model, network, header, samples)
    if resume.exists():
        os.remove(resume)
    if patches is None and not opts.keep_patches:
        cache.close()
        shutil.rmtree(cache.folder, ignore_errors=True)
    progress.update(1.0, f"model written to {output_model} (best epoch {best_epoch}, "
                         f"validation IoU per glacier {best_iou:.4f}; {header.training['patches_per_s']} "
                         f"patches/s, {busy:.0%} of the time in the training step)")
    return TrainResult(Path(output_model), header, history, best_epoch, start - 1)


def member_path(output_model, seed: int, member: int) -> Path:
    """Member 0 is OUTPUT_MODEL itself; the others are named by the seed that sets them apart."""
    path = Path(output_model)
    return path if member == 0 else path.with_name(f"{path.stem}_seed{seed}{path.suffix}")


def train_member(rasters, inventory: Inventory, output_model, dem_path, options: TrainOptions,
                 patch_folder, *, progress: Progress) -> dict:
    """One ensemble member from the patch cache the client cut (a piece for a pool: a Dask
    task reads the cache from the shared folder)."""
    done = _trained_before(output_model, rasters, inventory, options, patch_folder)
    if done is not None:  # a rerun after a lost scheduler or a stop: finished members stay
        progress.info(f"{Path(output_model).name}: trained before with these inputs and settings, kept")
        header = done
    else:
        cache = PatchCache(patch_folder)
        try:
            header = train_model(rasters, inventory, output_model, dem_path, options, progress,
                                 patches=cache).header
        finally:
            cache.close()
    return {"model": str(output_model), "seed": options.seed, "best_epoch": header.metrics.get("best_epoch"),
            "val_iou": header.metrics.get("val_iou_per_glacier"),
            "patches_per_s": header.training.get("patches_per_s")}


def _trained_before(output_model, rasters, inventory, options: TrainOptions, patch_folder):
    """The header of `output_model` when it was trained from the same patches (their cache
    key covers the files, outlines and patch settings) with the same settings, else None."""
    from .model_file import read_header
    if not Path(output_model).is_file():
        return None
    try:
        header = read_header(output_model)
    except Exception:  # not a model (any more): train it again
        return None
    t = header.training or {}
    same = (t.get("patches") == Path(patch_folder).name and t.get("epochs") == options.epochs
            and t.get("config") == _config_hash(rasters, inventory, options.bands, options))
    return header if same else None


def train_ensemble(rasters, inventory: Inventory, output_model, dem_path=None,
                   options: TrainOptions | None = None, members: int = 1,
                   progress: Progress | None = None, pool=None) -> list[dict]:
    """MEMBERS models that differ only by their seed (SEED, SEED + 1, ...: initialisation and
    batch order; the same patches and validation glaciers), as DL4GAM's ensembles; each a
    piece of `pool`, so a cluster trains them side by side. Patches are cut once."""
    from dataclasses import replace

    from ..cluster import LocalPool
    opts = options or TrainOptions()
    progress = progress or Progress()
    pool = pool or LocalPool()
    if members < 1:
        raise ValueError(f"MEMBERS must be at least 1, not {members}")
    rasters = [str(Path(r).resolve()) for r in rasters]
    dem_path = str(Path(dem_path).resolve()) if dem_path else None
    output_model = Path(output_model).resolve()
    bands = list(opts.bands) if opts.bands else default_bands(rasters[0], dem_path)
    check_features(list(opts.features), bands)
    _fine_tuning_header(opts.encoder_weights, opts.encoder, bands, list(opts.features))  # refused before any cutting
    cache = extract_patches(rasters, inventory, bands, opts.patch_size, dem_path, opts.mapping,
                            opts.quality, progress=progress.sub(0.0, 0.1), cache_root=opts.patch_cache,
                            features=list(opts.features))
    cache.close()
    items = [(str(member_path(output_model, opts.seed + m, m)), dem_path,
              replace(opts, seed=opts.seed + m, bands=bands), str(cache.folder)) for m in range(members)]
    try:
        trained = pool.run(train_member, items, progress.sub(0.1, 1.0), gpu=opts.device == "cuda",
                           common=(rasters, inventory),
                           done=lambda i, r: f"member {i + 1}/{members} (seed {r['seed']}): "
                                             f"{Path(r['model']).name}, best epoch {r['best_epoch']}, "
                                             f"validation IoU {r['val_iou']}")
        if pool.remote:
            remove_partials(t["model"] for t in trained)
        return trained
    finally:
        if not opts.keep_patches:
            shutil.rmtree(cache.folder, ignore_errors=True)


def _fine_tuning_header(weights, encoder, bands, features=()):
    """The header of the model to fine-tune from (checked against this training), or None."""
    weights = (weights or "none").strip()
    if weights.lower() in ("none", "imagenet"):
        return None
    from .model_file import ModelFileError, read_header
    if not Path(weights).is_file():
        raise ValueError(f"ENCODER_WEIGHTS: {weights!r} is neither none, imagenet nor an existing "
                         ".gmm model file")
    try:
        header = read_header(weights)
    except ModelFileError as err:
        raise ValueError(f"ENCODER_WEIGHTS: {err}") from None
    if header.encoder != encoder or header.bands != list(bands) or header.features != list(features):
        raise ValueError(f"ENCODER_WEIGHTS: {weights} is a {header.encoder} model of bands "
                         f"{', '.join(header.bands)} and features {', '.join(header.features) or 'none'}; this "
                         f"training uses {encoder}, {', '.join(bands)} and {', '.join(features) or 'none'}: "
                         "set ENCODER, BANDS and FEATURES to match it")
    return header
