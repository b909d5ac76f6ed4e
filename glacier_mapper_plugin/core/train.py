"""Training a glacier U-Net from imagery and an inventory (Diaconu & Bamber 2023, improved).

Glacier-centred patches; per-band standardisation from training patches only (stored in the
model); binary cross-entropy that ignores no-data, cloud and shadow pixels; D4 flips and
rotations; a validation split by glacier, never by patch (neighbouring patches share
pixels); the checkpoint with the best mean per-glacier validation IoU is kept. Every epoch
writes a resume file (in the user's cache), so a stopped run continues from its last finished epoch. All
randomness derives from SEED (per epoch), so a run is reproducible on the CPU and a
resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from .bands import canonical
from .io import atomic_output
from .labels import QUALITY_NAMES, Inventory
from .metrics import add, confusion, scores
from .model_file import ModelHeader, build_network, save_model
from .patches import PatchSet, extract_patches
from .progress import Progress
from .segment import pick_device


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


def split_glaciers(glaciers, fraction: float, seed: int):
    """(train, validation) glacier ids: a seeded random share of glaciers for validation."""
    glaciers = sorted(set(int(g) for g in glaciers))
    if len(glaciers) < 2 or fraction <= 0:
        return glaciers, []
    rng = np.random.default_rng([seed, 7919])
    n_val = min(max(1, int(round(fraction * len(glaciers)))), len(glaciers) - 1)
    val = sorted(int(g) for g in rng.choice(glaciers, size=n_val, replace=False))
    return [g for g in glaciers if g not in val], val


def band_statistics(x: np.ndarray, valid: np.ndarray):
    """Per-band mean and std over valid pixels of the training patches."""
    mean, std = [], []
    for c in range(x.shape[1]):
        v = x[:, c][valid]
        if v.size == 0:
            raise ValueError("no valid pixel in the training patches (all cloud or no data?)")
        mean.append(float(v.mean()))
        std.append(max(float(v.std()), 1e-6))
    return mean, std


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


def masked_bce(logits, target, valid):
    """Binary cross-entropy averaged over valid pixels only: a cloud pixel adds nothing."""
    import torch.nn.functional as F
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = valid.float()
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


def evaluate_patches(network, ps: PatchSet, indices, device, batch_size, autocast_dtype=None):
    """Per-glacier IoU (mean over glaciers) and pooled confusion on the given patches."""
    import torch
    per_glacier: dict[int, dict] = {}
    total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    network.eval()
    with torch.inference_mode():
        for b0 in range(0, len(indices), batch_size):
            idx = indices[b0:b0 + batch_size]
            x = torch.from_numpy(ps.x[idx]).to(device)
            with torch.autocast(device.split(":")[0], dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                prob = torch.sigmoid(network(x).float())[:, 0].cpu().numpy()
            for j, i in enumerate(idx):
                c = confusion(prob[j] >= 0.5, ps.y[i] > 0, ps.valid[i])
                g = ps.patches[i].glacier
                per_glacier[g] = add(per_glacier.get(g, {}), c)
                total = add(total, c)
    ious = [scores(c)["iou"] for c in per_glacier.values()]
    ious = [v for v in ious if np.isfinite(v)]
    return (float(np.mean(ious)) if ious else float("nan")), total


def _config_hash(rasters, inventory, bands, opts: TrainOptions) -> str:
    cfg = {k: v for k, v in asdict(opts).items() if k not in ("epochs", "device")}
    cfg.update(rasters=[str(Path(r).resolve()) for r in rasters], bands=bands,
               glaciers=[str(i) for i in inventory.ids])
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """The user's Glacier Mapper cache: $GLACIER_MAPPER_CACHE, else the platform's cache."""
    if os.environ.get("GLACIER_MAPPER_CACHE"):
        return Path(os.environ["GLACIER_MAPPER_CACHE"])
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "glacier_mapper"


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
            return None
        tensors = load_file(str(path), device=str(device))
    except Exception:  # an unreadable resume file is ignored, never trusted
        return None
    network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v.cpu() for k, v in tensors.items() if k.startswith("best.")}
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta, best


def train_model(rasters, inventory: Inventory, output_model, dem_path=None,
                options: TrainOptions | None = None, progress: Progress | None = None,
                patches: PatchSet | None = None) -> TrainResult:
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
    device = pick_device(opts.device)
    bands = list(opts.bands) if opts.bands else default_bands(rasters[0], dem_path)
    progress.info(f"bands: {', '.join(bands)}; device {device}")

    ps = patches or extract_patches(rasters, inventory, bands, opts.patch_size, dem_path,
                                    opts.mapping, opts.quality, progress=progress)
    glaciers = sorted({p.glacier for p in ps.patches})
    if opts.train_glaciers is not None:
        glaciers = [g for g in glaciers if g in set(opts.train_glaciers)]
    if opts.val_glaciers is not None:
        val_g = sorted(set(opts.val_glaciers) & set(glaciers))
        train_g = [g for g in glaciers if g not in val_g]
    else:
        train_g, val_g = split_glaciers(glaciers, opts.val_fraction, opts.seed)
    train_idx = np.array([i for i, p in enumerate(ps.patches) if p.glacier in set(train_g)], int)
    val_idx = np.array([i for i, p in enumerate(ps.patches) if p.glacier in set(val_g)], int)
    if train_idx.size == 0:
        raise ValueError("no training patch: the inventory's glaciers do not overlap INPUT")
    progress.info(f"{len(train_idx)} training patches on {len(train_g)} glaciers, "
                  f"{len(val_idx)} validation patches on {len(val_g)} glaciers")

    mean, std = band_statistics(ps.x[train_idx], ps.valid[train_idx])
    data = PatchSet(standardise(ps.x, ps.valid, mean, std), ps.y, ps.valid, ps.patches, bands)

    with rasterio.open(rasters[0]) as src:
        pixel = abs(src.transform.a)
    header = ModelHeader(bands=bands, mean=mean, std=std, encoder=opts.encoder,
                         pixel_size_m=pixel, patch_size=opts.patch_size,
                         units={b: ("m" if b == "DEM" else "reflectance") for b in bands})
    torch.manual_seed(opts.seed)
    network = build_network(header.validate()).to(device)
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
        if loaded is not None:
            meta, best_state = loaded
            history, best_iou, best_epoch = meta["history"], meta["best_iou"], meta["best_epoch"]
            start = meta["epoch"] + 1
            progress.info(f"resuming after epoch {meta['epoch']} from {resume.name}")
        else:
            progress.warning(f"{resume.name} belongs to other settings: starting afresh")

    n_batches = -(-len(train_idx) // opts.batch_size)
    for epoch in range(start, opts.epochs + 1):
        network.train()
        rng = np.random.default_rng([opts.seed, epoch])
        order = rng.permutation(train_idx)
        losses = []
        for b, b0 in enumerate(range(0, len(order), opts.batch_size)):
            progress.check()
            idx = np.sort(order[b0:b0 + opts.batch_size])
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            x, y, v = d4([data.x[idx], data.y[idx], data.valid[idx]], k, flip)
            x, y, v = (torch.from_numpy(a).to(device) for a in (x, y.astype(np.float32), v))
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = network(x)[:, 0]
            loss = masked_bce(logits.float(), y, v)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            progress.update(((epoch - 1) + (b + 1) / n_batches) / opts.epochs)
        val_iou, val_conf = evaluate_patches(network, data, val_idx, device, opts.batch_size,
                                             amp_dtype) if len(val_idx) else (float("nan"), None)
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

    network.load_state_dict(best_state)
    network.eval()
    metrics = {"best_epoch": best_epoch, "val_iou_per_glacier": best_iou if best_iou >= 0 else None}
    if len(val_idx):
        _, conf = evaluate_patches(network, data, val_idx, device, opts.batch_size, amp_dtype)
        metrics["validation"] = scores(conf)
    header.metrics = metrics
    header.training = dict(
        rasters=[Path(r).name for r in rasters], patches_train=int(len(train_idx)),
        patches_val=int(len(val_idx)), glaciers_train=len(train_g), glaciers_val=len(val_g),
        epochs=opts.epochs, batch_size=opts.batch_size, learning_rate=opts.learning_rate,
        seed=opts.seed, device=device, history=history,
        seconds=round(time.perf_counter() - t0, 1))
    save_model(output_model, network, header)
    if resume.exists():
        os.remove(resume)
    progress.update(1.0, f"model written to {output_model} (best epoch {best_epoch}, "
                         f"validation IoU per glacier {best_iou:.4f})")
    return TrainResult(Path(output_model), header, history, best_epoch, start - 1)
