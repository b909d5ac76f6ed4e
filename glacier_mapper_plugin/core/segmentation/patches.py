"""Training patches centred on glaciers (Diaconu & Bamber 2023): per glacier, a grid of
centres every half patch over the glacier, plus its centroid and its extreme points, so
every part of every glacier (small ones included) is seen; labels are all glaciers in the
patch, and a validity mask marks no-data, cloud and shadow pixels for the loss to ignore.

Patches are cut once into an on-disk cache (three flat files and an index) keyed by the
inputs and settings, and read back one patch at a time: every epoch, fold and ensemble
member reuses them, and memory does not grow with the number of patches (the Alps' ~8,700
patches of 256 px with 6 bands are ~14 GB).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..imagery.bands import band_readers
from .features import derive
from ..identity import file_key, fingerprint
from ..io import cache_dir
from ..imagery.quality import masked_from_quality, quality_band
from ..labels import Inventory, rasterize_ids

CACHE_VERSION = 1  # bump when what goes into a patch changes: old caches are then ignored


@dataclass(frozen=True)
class Patch:
    source: int   # index of the raster
    row: int      # top-left pixel of the patch
    col: int
    glacier: int  # inventory index + 1 of the glacier it was centred on


def glacier_centres(ids: np.ndarray, gid: int, patch_size: int, offset=(0, 0)) -> list[tuple[int, int]]:
    """Centres (row, col) on glacier `gid`: grid every patch/2, centroid, extreme points.
    `ids` may be the glacier's own window (then `offset` is its top-left pixel)."""
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
    return sorted((r + offset[0], c + offset[1]) for r, c in centres)


def patch_origin(centre: int, size: int, length: int) -> int:
    """Top-left coordinate of a patch centred on `centre`, shifted inside [0, length)."""
    return int(min(max(centre - size // 2, 0), max(length - size, 0)))


_SEEK = threading.Lock()


def read_at(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`: os.pread where the system has it (Linux, macOS). Windows'
    Python has no pread: there the file position, which a process's threads share, is moved
    and read under a lock."""
    pread = getattr(os, "pread", None)
    if pread is not None:
        return pread(fd, size, offset)
    with _SEEK:
        os.lseek(fd, offset, os.SEEK_SET)
        parts, left = [], size
        while left:
            chunk = os.read(fd, left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
    return b"".join(parts)


class PatchCache:
    """Patches on disk: x (N, C, P, P) float32 decoded values (not standardised), y (N, P, P)
    uint8 labels, valid (N, P, P) uint8, per-patch band moments, and the Patch records.
    Read at offsets (read_at), not through a memory map: a map's touched pages count as the process's memory
    and would grow to the whole cache over an epoch."""

    def __init__(self, folder):
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.bands, self.patch_size = index["bands"], int(index["patch_size"])
        self.patches = [Patch(*p) for p in index["patches"]]
        self.moments = np.load(self.folder / "moments.npy")  # (N, C, 3): count, mean, M2
        c, p = len(self.bands), self.patch_size
        self._sizes = {"x": c * p * p * 4, "y": p * p, "valid": p * p}
        self._files, self._pid = {}, None

    def __len__(self):
        return len(self.patches)

    def _fd(self, name):
        if self._pid != os.getpid():  # DataLoader workers fork: each opens its own files
            self._files, self._pid = {}, os.getpid()
        if name not in self._files:
            # O_BINARY: Windows would otherwise open in text mode and translate bytes
            self._files[name] = os.open(self.folder / f"{name}.bin", os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._files[name]

    def _read(self, name, i, dtype, shape):
        size = self._sizes[name]
        buf = read_at(self._fd(name), size, int(i) * size)
        if len(buf) != size:
            raise OSError(f"patch cache {self.folder} is truncated: remove it and run again")
        return np.frombuffer(buf, dtype).reshape(shape).copy()

    def read(self, i):
        """(x (C, P, P) float32, y (P, P) uint8, valid (P, P) bool) of patch i."""
        c, p = len(self.bands), self.patch_size
        return (self._read("x", i, np.float32, (c, p, p)), self._read("y", i, np.uint8, (p, p)),
                self._read("valid", i, np.uint8, (p, p)).astype(bool))

    def arrays(self, indices):
        """Stacked (x, y, valid) of a few patches (a batch, a test)."""
        parts = [self.read(i) for i in indices]
        return tuple(np.stack([q[j] for q in parts]) for j in range(3))

    def close(self):
        for fd in self._files.values():
            os.close(fd)
        self._files = {}

    def __getstate__(self):  # pickled into DataLoader workers (spawn): without open files
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, None
        return state


class _CacheWriter:
    """Appends patches to the cache files of a folder being built."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {n: open(folder / f"{n}.bin", "wb") for n in ("x", "y", "valid")}
        self.records, self.moments = [], []

    def add(self, x, label, valid, patch):
        self.files["x"].write(np.ascontiguousarray(x, np.float32).tobytes())
        self.files["y"].write(np.ascontiguousarray(label, np.uint8).tobytes())
        self.files["valid"].write(np.ascontiguousarray(valid, np.uint8).tobytes())
        self.records.append(patch)
        m = np.zeros((x.shape[0], 3))
        for c in range(x.shape[0]):  # per band: valid count, mean, sum of squared deviations
            v = x[c][valid].astype(np.float64)
            if v.size:
                m[c] = v.size, v.mean(), ((v - v.mean()) ** 2).sum()
        self.moments.append(m)

    def close(self, bands, patch_size):
        for f in self.files.values():
            f.close()
        np.save(self.folder / "moments.npy", np.array(self.moments).reshape(-1, len(bands), 3))
        (self.folder / "index.json").write_text(json.dumps(
            dict(version=CACHE_VERSION, bands=list(bands), patch_size=patch_size,
                 patches=[list(asdict(p).values()) for p in self.records])))


def band_statistics(moments: np.ndarray):
    """Per-band mean and std over the valid pixels of the patches whose moments are given,
    merged exactly (Chan et al. 1979) in one streaming pass of per-patch numbers."""
    count = moments[..., 0].sum(axis=0)
    if not (count > 0).all():
        raise ValueError("no valid pixel in the training patches (all cloud or no data?)")
    mean = (moments[..., 0] * moments[..., 1]).sum(axis=0) / count
    m2 = (moments[..., 2] + moments[..., 0] * (moments[..., 1] - mean) ** 2).sum(axis=0)
    std = np.sqrt(m2 / count)
    return [float(m) for m in mean], [max(float(s), 1e-6) for s in std]


def _pad(a, size, value):
    ph, pw = size - a.shape[-2], size - a.shape[-1]
    if ph <= 0 and pw <= 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, max(ph, 0)), (0, max(pw, 0))]
    return np.pad(a, pad, constant_values=value)


class RasterOutlines:
    """The outlines near one raster, in its CRS, burnt a window at a time: memory follows the
    largest glacier, not the raster (a Sentinel-2 tile's id grid alone is 0.5 GB). Only the
    outlines near the raster are transformed (5000 per-glacier chips must not cost 5000^2);
    ids are those of the whole inventory (index + 1)."""

    def __init__(self, inventory: Inventory, src):
        self.src = src
        self.near = inventory.near(src.crs, tuple(src.bounds))
        self.local = inventory.subset(self.near).to_crs(src.crs)
        self.lookup = np.concatenate([[0], self.near + 1]).astype(np.int32)

    def ids(self, win: Window) -> np.ndarray:
        from rasterio.windows import transform as window_transform
        return self.lookup[rasterize_ids(self.local, self.src.crs, window_transform(win, self.src.transform),
                                         (int(win.height), int(win.width)))]

    def glacier_windows(self, margin: int, only=None):
        """(glacier id, window, ids on it) per outline (or per glacier id in `only`): its pixel
        bounding box widened by `margin`, clipped to the raster, burnt with every outline
        that reaches it."""
        inverse = ~self.src.transform
        for k, g in zip(self.near, self.local.geometries):
            if g is None or g.is_empty or (only is not None and int(k) + 1 not in only):
                continue
            x0, y0, x1, y1 = g.bounds
            cols, rows = zip(*(inverse * (x, y) for x in (x0, x1) for y in (y0, y1)))
            r0 = max(int(np.floor(min(rows))) - margin, 0)
            r1 = min(int(np.ceil(max(rows))) + margin, self.src.height)
            c0 = max(int(np.floor(min(cols))) - margin, 0)
            c1 = min(int(np.ceil(max(cols))) + margin, self.src.width)
            if r1 > r0 and c1 > c0:
                win = Window(c0, r0, c1 - c0, r1 - r0)
                yield int(k) + 1, win, self.ids(win)

    def label(self, row: int, col: int, height: int, width: int, near=None) -> np.ndarray:
        """Glacier (any outline) or not on a window: sliced from `near` (a (window, ids) pair
        of glacier_windows) when it holds the window, else burnt anew."""
        if near is not None:
            win, ids = near
            r, c = row - win.row_off, col - win.col_off
            if r >= 0 and c >= 0 and r + height <= win.height and c + width <= win.width:
                return ids[r:r + height, c:c + width] > 0
        return self.ids(Window(col, row, width, height)) > 0


def _home_rasters(rasters, inventory: Inventory) -> np.ndarray:
    """For each glacier id (index), the raster holding most of its pixels (-1: none).
    Per-glacier chips overlap their neighbours: sampling a glacier in every chip that shows
    a part of it would repeat patches and weight glaciers by how crowded they are."""
    home = np.full(len(inventory.geometries) + 1, -1)
    most = np.zeros(len(inventory.geometries) + 1, np.int64)
    for source, path in enumerate(rasters):
        with rasterio.open(path) as src:
            for gid, _, ids in RasterOutlines(inventory, src).glacier_windows(0):
                n = int((ids == gid).sum())  # this chip's part of the glacier only
                if n > most[gid]:  # ties: the first raster
                    home[gid], most[gid] = source, n
    return home


def cache_key(rasters, inventory: Inventory, bands, patch_size, dem_path, mapping, quality,
              glaciers, features=()) -> str:
    """What the patches depend on: the files (path, size, time), the outlines, the settings."""
    cfg = dict(version=CACHE_VERSION, rasters=[file_key(r) for r in rasters],
               dem=file_key(dem_path) if dem_path else None, bands=list(bands),
               patch_size=patch_size, mapping=mapping, quality=quality,
               glaciers=None if glaciers is None else sorted(int(g) for g in glaciers),
               features=list(features),
               inventory=hashlib.sha256(json.dumps(
                   [[str(i), fingerprint(g)] for i, g in zip(inventory.ids, inventory.geometries)]
                   + [inventory.crs]).encode()).hexdigest())
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:20]


def extract_patches(rasters, inventory: Inventory, bands, patch_size: int, dem_path=None,
                    mapping=None, quality="auto", glaciers=None, progress=None,
                    cache_root=None, features=()) -> PatchCache:
    """The glacier-centred patches of the rasters: from the cache when these inputs and
    settings were cut before, else cut now (windowed reads only) into a new cache folder
    under `cache_root` (default: the user's cache), moved into place only when complete."""
    rasters = [str(r) for r in rasters]
    root = Path(cache_root) if cache_root else cache_dir() / "patches"
    key = cache_key(rasters, inventory, bands, patch_size, dem_path, mapping, quality, glaciers, features)
    folder = root / key
    if (folder / "index.json").is_file():
        cache = PatchCache(folder)
        if progress is not None:
            progress.info(f"{len(cache)} patches from the cache {folder}")
        return cache
    root.mkdir(parents=True, exist_ok=True)
    building = root / f".{key}.partial-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    try:
        writer = _CacheWriter(building)
        try:
            _cut(writer, rasters, inventory, bands, patch_size, dem_path, mapping, quality,
                 glaciers, progress, features)
        finally:
            writer.close(list(bands) + list(features), patch_size)  # channel names
        if not writer.records:
            raise ValueError("no glacier of INVENTORY falls on INPUT: check that they overlap")
        try:
            os.replace(building, folder)
        except OSError:  # another run finished the same cache first: use theirs
            if not (folder / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    if progress is not None:
        progress.info(f"{len(writer.records)} patches cut into {folder}")
    return PatchCache(folder)


def _cut(writer, rasters, inventory, bands, patch_size, dem_path, mapping, quality, glaciers,
         progress, features=()):
    home = _home_rasters(rasters, inventory) if len(rasters) > 1 else None
    for source, path in enumerate(rasters):
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(rasterio.open(path))
            if src.crs is None or src.crs.is_geographic:
                raise ValueError(f"INPUT {path}: imagery must be in a metric CRS (UTM), not {src.crs}")
            readers = band_readers(stack, src, bands, mapping, dem_path, progress)
            qband = quality_band(src, quality)
            outlines = RasterOutlines(inventory, src)
            wanted = None if glaciers is None else set(int(g) for g in glaciers)
            if home is not None:  # each glacier sampled once, where most of it is
                mine = set(np.nonzero(home == source)[0].tolist()) - {0}
                wanted = mine if wanted is None else mine & wanted
            cut, on = 0, set()
            for gid, win, ids in outlines.glacier_windows(patch_size, wanted):
                for r, c in glacier_centres(ids, gid, patch_size, (win.row_off, win.col_off)):
                    if progress is not None:
                        progress.check()
                    p = Patch(source, patch_origin(r, patch_size, src.height),
                              patch_origin(c, patch_size, src.width), gid)
                    x, label, valid = _read_window(src, readers, qband, outlines, bands, features, p.row,
                                                   p.col, patch_size, (win, ids))
                    writer.add(x, label, valid, p)
                    cut, on = cut + 1, on | {gid}
            if progress is not None:
                progress.info(f"{path}: {cut} patches on {len(on)} glaciers")


def _read_window(src, readers, qband, outlines: RasterOutlines, bands, features, row: int, col: int, size: int,
                 near=None):
    """(x, label, valid) of the size x size window at (row, col), decoded as segment decodes
    it and padded (invalid) where it passes the raster's edge; `near`: RasterOutlines.label's."""
    win = Window(col, row, min(size, src.width - col), min(size, src.height - row))
    x = np.empty((len(readers), win.height, win.width), np.float32)
    invalid = np.zeros((win.height, win.width), bool)
    for c, (ds, b, decode) in enumerate(readers):
        x[c], bad = decode(ds.read(b, window=win))
        invalid |= bad
    if features:  # from the decoded bands, as segment computes them
        x = np.concatenate([x, derive(x, bands, features, abs(src.transform.a))])
    if qband is not None:
        invalid |= masked_from_quality(src.read(qband, window=win))
    label = outlines.label(row, col, win.height, win.width, near)
    return _pad(x, size, 0.0), _pad(label.astype(np.uint8), size, 0), _pad(~invalid, size, False)


def cut_windows(rasters, inventory: Inventory, bands, size: int, count: int, seed: int, dem_path=None,
                mapping=None, quality="auto", features=(), glaciers=None):
    """`count` windows of `size` px, decoded as the patches are, spread over the rasters:
    anywhere on them (the whole scene: ice, rock, water, shadow), or centred on random
    pixels of `glaciers` (ids as in the patches) when given. (x, label, valid) stacked."""
    rng = np.random.default_rng([seed, 9])
    out = []
    for source, path in enumerate(rasters):
        n = count // len(rasters) + (source < count % len(rasters))
        if n == 0:
            continue
        with contextlib.ExitStack() as stack:
            src = stack.enter_context(rasterio.open(path))
            readers = band_readers(stack, src, bands, mapping, dem_path, None)
            qband = quality_band(src, quality)
            outlines = RasterOutlines(inventory, src)
            if glaciers is not None:
                origins = _glacier_pixels(outlines, set(int(g) for g in glaciers), n, rng)
                origins = [(patch_origin(r, size, src.height), patch_origin(c, size, src.width)) for r, c in origins]
            else:
                origins = [(int(rng.integers(max(src.height - size, 0) + 1)),
                            int(rng.integers(max(src.width - size, 0) + 1))) for _ in range(n)]
            out += [_read_window(src, readers, qband, outlines, bands, features, r, c, size) for r, c in origins]
    return tuple(np.stack(a) for a in zip(*out)) if out else None


def _glacier_pixels(outlines: RasterOutlines, glaciers: set, n: int, rng) -> list[tuple[int, int]]:
    """`n` pixels (row, col) drawn uniformly from the pixels of `glaciers` on the raster, in
    two passes over the glaciers' windows (count, then pick), so no raster-sized array."""
    counts = [(gid, int((ids == gid).sum())) for gid, _, ids in outlines.glacier_windows(0, glaciers)]
    total = sum(c for _, c in counts)
    if total == 0:
        return []
    picks = np.sort(rng.choice(total, n, replace=total < n))
    starts = dict(zip([g for g, _ in counts], np.cumsum([0] + [c for _, c in counts])[:-1]))
    mine = {gid: picks[(picks >= starts[gid]) & (picks < starts[gid] + c)] - starts[gid] for gid, c in counts}
    found = []
    for gid, win, ids in outlines.glacier_windows(0, {g for g, k in mine.items() if len(k)}):
        rows, cols = np.nonzero(ids == gid)
        found += [(int(rows[k]) + win.row_off, int(cols[k]) + win.col_off) for k in mine[gid]]
    return found
