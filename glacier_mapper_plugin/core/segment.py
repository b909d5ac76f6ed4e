"""Streaming U-Net inference on rasters of any size, on CUDA or CPU.

The raster is processed in strips of overlapping tiles: each strip is read once, decoded to
physical units, normalised with the model's statistics (no-data pixels set to the band mean,
i.e. 0 after normalisation, and flagged), run through the network in batches, and blended
into a strip accumulator with smooth (raised-cosine) weights, so tile borders leave no seam.
Rows that no later tile can touch are written out at once: memory depends on the tile size,
batch size and raster width, never on the raster height. Raster borders get real context
(the last tile is shifted inside the raster); rasters smaller than a tile are mirrored.
"""
from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from shapely.geometry import box, shape
from shapely.ops import unary_union
from shapely.prepared import prep

from .bands import band_readers
from .geodesy import ellipsoidal_area_km2, utm_epsg
from .io import GTIFF_PROFILE, atomic_output, gdal_cache_limit
from .model_file import load_model
from .progress import Progress
from .vector import VectorLayer, write_gpkg

PROBABILITY_NODATA_U8 = 255
MASK_NODATA = 255


@dataclass
class SegmentOptions:
    tile_size: int = 512
    overlap: int = 64
    batch_size: int = 4
    threshold: float | None = None          # None: the model's own
    device: str = "auto"                    # auto, cuda, cpu
    precision: str = "auto"                 # auto, fp32, bf16, fp16
    probability_dtype: str = "float32"      # float32 (NaN = no data) or uint8 (0-100, 255)
    bands: dict[str, int] | None = None     # explicit model band -> raster band mapping
    mask_geometries: list = field(default_factory=list)  # in the raster CRS
    mask_buffer_m: float = 0.0
    min_area_km2: float = 0.0
    simplify_m: float = 0.0


@dataclass
class SegmentResult:
    probability: Path
    mask: Path | None
    polygons: Path | None
    device: str
    precision: str
    tiles: int
    tiles_skipped: int
    glacier_area_km2: float
    seconds: float


def pick_device(device: str = "auto") -> str:
    import torch
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("DEVICE is cuda but torch sees no CUDA GPU (torch "
                         f"{torch.__version__}); use DEVICE auto or cpu")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"DEVICE must be auto, cuda or cpu, not {device!r}")
    return device


def cpu_supports_bf16() -> bool:
    import torch
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def pick_precision(precision: str, device: str) -> str:
    import torch
    precision = (precision or "auto").lower()
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"PRECISION must be auto, fp32, bf16 or fp16, not {precision!r}")
    if precision != "auto":
        if precision == "fp16" and device == "cpu":
            raise ValueError("PRECISION fp16 is for CUDA; on the CPU use bf16 or fp32")
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """2-D weights: 1 in the tile core, raised-cosine ramps over the overlap, never 0."""
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        r = 0.5 - 0.5 * np.cos(np.pi * t)
        ramp[:overlap] = r
        ramp[-overlap:] = r[::-1]
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp)


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts covering [0, length): the last tile ends at the border (real context)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def fuse_conv_bn(model):
    """Fold each eval-mode BatchNorm into the convolution before it (torch's own
    fuse_conv_bn_eval): same outputs, one pass over the activations fewer per layer."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fuse_pair(parent, conv_name, bn_name):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, torch.nn.Identity())

    for module in list(model.modules()):
        if isinstance(module, torch.nn.Sequential):
            keys = list(module._modules)
            for a, b in zip(keys, keys[1:]):
                fuse_pair(module, a, b)
        else:  # torchvision ResNet blocks: conv1/bn1, conv2/bn2, ...
            for name in list(module._modules):
                if name.startswith("conv") and "bn" + name[4:] in module._modules:
                    fuse_pair(module, name, "bn" + name[4:])
    return model


class Network:
    """The model on its device, with autocast and channels_last chosen once."""

    def __init__(self, model_path, device: str, precision: str):
        import torch
        self.torch = torch
        self.device = device
        self.precision = precision
        self.model, self.header = load_model(model_path, device=device)
        fuse_conv_bn(self.model)
        if device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) normalised float32 -> (N, H, W) glacier probability float32."""
        torch = self.torch
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        if self.device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            with torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype is not None):
                logits = self.model(x)
            prob = torch.sigmoid(logits.float())[:, 0]
        return prob.cpu().numpy()


def _suggest_utm(src) -> str:
    lon = (src.bounds.left + src.bounds.right) / 2
    lat = (src.bounds.bottom + src.bounds.top) / 2
    return f"EPSG:{utm_epsg(lon, lat)}"


def _check_grid(src, header, progress):
    if src.crs is None:
        raise ValueError("INPUT has no CRS: georeference it first")
    if src.crs.is_geographic:
        raise ValueError(f"INPUT is in a geographic CRS ({src.crs}); the model works on a "
                         f"metric {header.pixel_size_m:g} m grid. Reproject it to its local UTM "
                         f"zone ({_suggest_utm(src)}) first, e.g. with GDAL Warp (reproject)")
    res = abs(src.transform.a)
    if not 0.8 <= res / header.pixel_size_m <= 1.25:
        progress.warning(f"INPUT pixels are {res:g} m but the model was trained on "
                         f"{header.pixel_size_m:g} m pixels: results may degrade")


def _pad_tile(arr: np.ndarray, tile: int) -> np.ndarray:
    """Mirror a (C, h, w) array up to (C, tile, tile): for rasters smaller than a tile."""
    ph, pw = tile - arr.shape[1], tile - arr.shape[2]
    if ph <= 0 and pw <= 0:
        return arr
    mode = "reflect" if arr.shape[1] > ph and arr.shape[2] > pw else "symmetric"
    if arr.shape[1] * 2 <= ph or arr.shape[2] * 2 <= pw:
        mode = "edge"
    return np.pad(arr, ((0, 0), (0, max(ph, 0)), (0, max(pw, 0))), mode=mode)


def segment(input_path, model_path, probability_path, mask_path=None, polygons_path=None,
            dem_path=None, options: SegmentOptions | None = None,
            progress: Progress | None = None) -> SegmentResult:
    """Glacier probability (and mask, polygons) for INPUT with the model in MODEL."""
    opts = options or SegmentOptions()
    progress = progress or Progress()
    t0 = time.perf_counter()
    if opts.tile_size < 32 or opts.tile_size % 32:
        raise ValueError(f"TILE_SIZE must be a multiple of 32 and at least 32, not {opts.tile_size}")
    if not 0 <= opts.overlap < opts.tile_size // 2:
        raise ValueError(f"OVERLAP must be between 0 and half the tile size, not {opts.overlap}")
    if opts.batch_size < 1:
        raise ValueError("BATCH_SIZE must be at least 1")
    device = pick_device(opts.device)
    precision = pick_precision(opts.precision, device)
    net = Network(model_path, device, precision)
    header = net.header
    threshold = header.threshold if opts.threshold is None else float(opts.threshold)
    if not 0 < threshold < 1:
        raise ValueError(f"THRESHOLD must be between 0 and 1, not {threshold}")
    progress.info(f"model: {header.architecture}/{header.encoder}, bands {', '.join(header.bands)}; "
                  f"device {device}" + (f" ({net.torch.cuda.get_device_name()})" if device == "cuda" else "")
                  + f", precision {precision}")

    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_cache_limit())
        src = stack.enter_context(rasterio.open(input_path))
        _check_grid(src, header, progress)
        readers = band_readers(stack, src, header.bands, opts.bands, dem_path, progress)

        H, W, T = src.height, src.width, opts.tile_size
        stride = T - opts.overlap
        ys, xs = tile_origins(H, T, stride), tile_origins(W, T, stride)
        weights = blend_weights(T, opts.overlap)
        region = None
        if opts.mask_geometries:
            geoms = [g for g in opts.mask_geometries if g is not None and not g.is_empty]
            region = prep(unary_union(geoms).buffer(opts.mask_buffer_m)) if geoms else None
            if region is None:
                raise ValueError("MASK_LAYER has no geometry")

        def tile_wanted(y, x):
            if region is None:
                return True
            left, top = src.transform * (x, y)
            right, bottom = src.transform * (min(x + T, W), min(y + T, H))
            return region.intersects(box(min(left, right), min(top, bottom),
                                         max(left, right), max(top, bottom)))

        plan = [[x for x in xs if tile_wanted(y, x)] for y in ys]
        n_tiles = sum(len(r) for r in plan)
        n_total = len(ys) * len(xs)
        progress.info(f"{W} x {H} pixels, {n_total} tiles of {T} px (overlap {opts.overlap}), "
                      f"{n_tiles} to run, batch {opts.batch_size}")

        prob_u8 = opts.probability_dtype == "uint8"
        # Deflate level 1: a third of the default level's CPU time for a few % more bytes,
        # and still readable by every GIS (ZSTD is faster still but not readable everywhere).
        base = dict(GTIFF_PROFILE, width=W, height=H, count=1, crs=src.crs, transform=src.transform,
                    ZLEVEL=1)
        prob_profile = dict(base, dtype="uint8", nodata=PROBABILITY_NODATA_U8) if prob_u8 else \
            dict(base, dtype="float32", nodata=float("nan"), predictor=3)
        tmp_prob = stack.enter_context(atomic_output(probability_path))
        prob_dst = stack.enter_context(rasterio.open(tmp_prob, "w", **prob_profile))
        prob_dst.set_band_description(1, "glacier probability" + (" (%)" if prob_u8 else ""))
        mask_dst = None
        if mask_path:
            tmp_mask = stack.enter_context(atomic_output(mask_path))
            mask_dst = stack.enter_context(rasterio.open(
                tmp_mask, "w", **dict(base, dtype="uint8", nodata=MASK_NODATA)))
            mask_dst.set_band_description(1, "glacier mask")
        for dst in filter(None, (prob_dst, mask_dst)):
            dst.update_tags(MODEL=Path(model_path).name, THRESHOLD=str(threshold),
                            SOURCE=Path(input_path).name, **{k: v for k, v in src.tags().items()
                                                             if k in ("DATE", "DATETIME", "SCENE_ID")})

        buf_h = min(H, T + stride)
        acc = np.zeros((buf_h, W), np.float32)
        wsum = np.zeros((buf_h, W), np.float32)
        invalid_buf = np.zeros((buf_h, W), bool)
        buf_y0 = 0
        done = 0
        glacier_px = 0
        pixel_area_km2 = abs(src.transform.a * src.transform.e) / 1e6

        def write_rows(out, mask, window):
            prob_dst.write(out, 1, window=window)
            if mask_dst is not None:
                mask_dst.write(mask, 1, window=window)

        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        writes = []

        def flush(upto: int):
            """Write rows [buf_y0, upto) and shift the strip accumulators."""
            nonlocal buf_y0, glacier_px
            n = upto - buf_y0
            if n <= 0:
                return
            with np.errstate(invalid="ignore", divide="ignore"):
                p = acc[:n] / wsum[:n]
            nodata = (wsum[:n] == 0) | invalid_buf[:n]
            window = Window(0, buf_y0, W, n)
            if prob_u8:
                out = np.rint(np.nan_to_num(p) * 100).astype(np.uint8)
                out[nodata] = PROBABILITY_NODATA_U8
            else:
                out = p.astype(np.float32)
                out[nodata] = np.nan
            mask = (np.nan_to_num(p) >= threshold).astype(np.uint8)
            mask[nodata] = MASK_NODATA
            glacier_px += int((mask == 1).sum())
            # Compression and writing run in the I/O thread, beside the next forward passes.
            writes.append(pool.submit(write_rows, out, mask, window))
            for arr in (acc, wsum, invalid_buf):
                arr[:-n] = arr[n:].copy() if n < buf_h else 0
                arr[-n:] = 0
            buf_y0 = upto

        def load_strip(y, row_xs):
            """Read, decode and normalise the strip under one tile row (runs in a thread,
            overlapping the previous row's forward passes: both release the GIL)."""
            if not row_xs:
                return None
            h = min(T, H - y)
            x0, x1 = min(row_xs), min(max(row_xs) + T, W)
            strip = np.empty((len(readers), h, x1 - x0), np.float32)
            strip_invalid = np.zeros((h, x1 - x0), bool)
            win = Window(x0, y, x1 - x0, h)
            for c, (ds, b, decode) in enumerate(readers):
                _, invalid = decode.standardise(ds.read(b, window=win), header.mean[c],
                                                header.std[c], out=strip[c])
                strip_invalid |= invalid
            if strip_invalid.any():
                strip[:, strip_invalid] = 0.0  # a pixel missing in any band is missing in all
            return strip, strip_invalid, x0, x1

        pending = pool.submit(load_strip, ys[0], plan[0])
        for row, (y, row_xs) in enumerate(zip(ys, plan)):
            progress.check()
            flush(y)
            h = min(T, H - y)
            loaded = pending.result()
            if row + 1 < len(ys):
                pending = pool.submit(load_strip, ys[row + 1], plan[row + 1])
            if loaded is not None:
                strip, strip_invalid, x0, x1 = loaded
                invalid_buf[y - buf_y0:y - buf_y0 + h, x0:x1] |= strip_invalid
                # Even batches (9 tiles at batch 4 -> 3+3+3, not 4+4+1): no tiny last batch.
                n_batches = -(-len(row_xs) // opts.batch_size)
                size = -(-len(row_xs) // n_batches)
                for b0 in range(0, len(row_xs), size):
                    progress.check()
                    batch_xs = row_xs[b0:b0 + size]
                    tiles = np.stack([_pad_tile(strip[:, :, x - x0:x - x0 + T], T) for x in batch_xs])
                    probs = net(tiles)
                    progress.check()
                    for x, p in zip(batch_xs, probs):
                        w_ = min(T, W - x)
                        acc[y - buf_y0:y - buf_y0 + h, x:x + w_] += p[:h, :w_] * weights[:h, :w_]
                        wsum[y - buf_y0:y - buf_y0 + h, x:x + w_] += weights[:h, :w_]
                    done += len(batch_xs)
                    progress.update(0.95 * done / max(n_tiles, 1), None)
            if row == len(ys) - 1:
                flush(H)
            while writes and writes[0].done():
                writes.pop(0).result()  # surface write errors early
        for w in writes:
            w.result()
        progress.info(f"{done} tiles in {time.perf_counter() - t0:.1f} s")
        polygons = None
        if polygons_path:
            if mask_dst is None:
                raise ValueError("OUTPUT_POLYGONS needs OUTPUT_MASK")
            mask_dst.close()
            polygons = polygonise(tmp_mask, polygons_path, opts.min_area_km2, opts.simplify_m)
    progress.update(1.0, f"glacier area {glacier_px * pixel_area_km2:.3f} km2 (planar)")
    return SegmentResult(Path(probability_path), Path(mask_path) if mask_path else None,
                         polygons, device, precision, n_tiles, n_total - n_tiles,
                         glacier_px * pixel_area_km2, time.perf_counter() - t0)


def polygonise(mask_path, polygons_path, min_area_km2=0.0, simplify_m=0.0) -> Path:
    """Glacier polygons from a mask raster: area on the ellipsoid, optional filters."""
    from rasterio import features
    with rasterio.open(mask_path) as src:
        mask = src.read(1)
        crs, transform = src.crs.to_wkt(), src.transform
    geoms, records = [], []
    for geom, _ in features.shapes(mask, mask=mask == 1, transform=transform, connectivity=8):
        poly = shape(geom)
        if simplify_m > 0:
            poly = poly.simplify(simplify_m, preserve_topology=True)
        area = ellipsoidal_area_km2(poly, crs)
        if area < min_area_km2 or poly.is_empty:
            continue
        geoms.append(poly)
        records.append(dict(id=len(records) + 1, area_km2=area))
    return write_gpkg(polygons_path, [VectorLayer("glaciers", crs, geoms, records,
                                                  fields={"id": int, "area_km2": float})])
