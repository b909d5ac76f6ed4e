"""Training patches centred on glaciers (Diaconu & Bamber 2023): per glacier, a grid of
centres every half patch over the glacier, plus its centroid and its extreme points, so
every part of every glacier (small ones included) is seen; labels are all glaciers in the
patch, and a validity mask marks no-data, cloud and shadow pixels for the loss to ignore.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from .bands import band_readers
from .labels import Inventory, masked_from_quality, quality_band, rasterize_ids


@dataclass(frozen=True)
class Patch:
    source: int   # index of the raster
    row: int      # top-left pixel of the patch
    col: int
    glacier: int  # inventory index + 1 of the glacier it was centred on


def glacier_centres(ids: np.ndarray, gid: int, patch_size: int) -> list[tuple[int, int]]:
    """Centres (row, col) on glacier `gid`: grid every patch/2, centroid, extreme points."""
    rows, cols = np.nonzero(ids == gid)
    if rows.size == 0:
        return []
    step = max(patch_size // 2, 1)
    centres = set()
    for r in range(int(rows.min()), int(rows.max()) + 1, step):
        for c in range(int(cols.min()), int(cols.max()) + 1, step):
            if ids[r, c] == gid:
                centres.add((r, c))
    # Centroid: the glacier pixel nearest the mean position (the mean may lie off the ice).
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    centres.add((int(rows[k]), int(cols[k])))
    for idx in (rows.argmin(), rows.argmax(), cols.argmin(), cols.argmax()):
        centres.add((int(rows[idx]), int(cols[idx])))
    return sorted(centres)


def patch_origin(centre: int, size: int, length: int) -> int:
    """Top-left coordinate of a patch centred on `centre`, shifted inside [0, length)."""
    return int(min(max(centre - size // 2, 0), max(length - size, 0)))


def sample_patches(ids: np.ndarray, patch_size: int, source: int = 0,
                   glaciers=None) -> list[Patch]:
    """All patches of one raster's id grid (optionally only for the given glacier ids)."""
    h, w = ids.shape
    wanted = np.unique(ids[ids > 0]) if glaciers is None else glaciers
    patches = []
    for gid in wanted:
        for r, c in glacier_centres(ids, int(gid), patch_size):
            patches.append(Patch(source, patch_origin(r, patch_size, h),
                                 patch_origin(c, patch_size, w), int(gid)))
    return patches


@dataclass
class PatchSet:
    """Patches as arrays: x (N, C, P, P) decoded values (not yet standardised), y (N, P, P)
    uint8 labels, valid (N, P, P) bool, and the Patch records."""
    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray
    patches: list
    bands: list


def _pad(a, size, value):
    ph, pw = size - a.shape[-2], size - a.shape[-1]
    if ph <= 0 and pw <= 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, max(ph, 0)), (0, max(pw, 0))]
    return np.pad(a, pad, constant_values=value)


def _home_rasters(rasters, inventory: Inventory) -> np.ndarray:
    """For each glacier id (index), the raster holding most of its pixels (-1: none).
    Per-glacier chips overlap their neighbours: sampling a glacier in every chip that shows
    a part of it would repeat patches and weight glaciers by how crowded they are."""
    counts = []
    for path in rasters:
        with rasterio.open(path) as src:
            ids = rasterize_ids(inventory, src.crs, src.transform, (src.height, src.width))
        counts.append(np.bincount(ids.ravel(), minlength=len(inventory.geometries) + 1))
    counts = np.stack(counts)
    home = counts.argmax(axis=0)
    home[counts.max(axis=0) == 0] = -1
    return home


def extract_patches(rasters, inventory: Inventory, bands, patch_size: int, dem_path=None,
                    mapping=None, quality="auto", glaciers=None, progress=None) -> PatchSet:
    """Read every glacier-centred patch of every raster (windowed reads only)."""
    xs, ys, vs, records = [], [], [], []
    home = _home_rasters(rasters, inventory) if len(rasters) > 1 else None
    for source, path in enumerate(rasters):
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(rasterio.open(path))
            if src.crs is None or src.crs.is_geographic:
                raise ValueError(f"INPUT {path}: imagery must be in a metric CRS (UTM), not {src.crs}")
            readers = band_readers(stack, src, bands, mapping, dem_path, progress)
            qband = quality_band(src, quality)
            ids = rasterize_ids(inventory, src.crs, src.transform, (src.height, src.width))
            wanted = glaciers
            if home is not None:  # each glacier sampled once, where most of it is
                mine = set(np.nonzero(home == source)[0].tolist()) - {0}
                wanted = sorted(mine if glaciers is None else mine & set(glaciers))
            patches = sample_patches(ids, patch_size, source, wanted)
            for p in patches:
                win = Window(p.col, p.row, min(patch_size, src.width - p.col),
                             min(patch_size, src.height - p.row))
                x = np.empty((len(readers), win.height, win.width), np.float32)
                invalid = np.zeros((win.height, win.width), bool)
                for c, (ds, b, decode) in enumerate(readers):
                    x[c], bad = decode(ds.read(b, window=win))
                    invalid |= bad
                if qband is not None:
                    invalid |= masked_from_quality(src.read(qband, window=win))
                label = ids[p.row:p.row + win.height, p.col:p.col + win.width] > 0
                xs.append(_pad(x, patch_size, 0.0))
                ys.append(_pad(label.astype(np.uint8), patch_size, 0))
                vs.append(_pad(~invalid, patch_size, False))
                records.append(p)
            if progress is not None:
                progress.info(f"{path}: {len(patches)} patches on "
                              f"{len(np.unique([p.glacier for p in patches]))} glaciers")
    if not records:
        raise ValueError("no glacier of INVENTORY falls on INPUT: check that they overlap")
    return PatchSet(np.stack(xs), np.stack(ys), np.stack(vs), records, list(bands))
