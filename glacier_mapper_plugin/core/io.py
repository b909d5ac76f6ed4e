"""Files that are either complete or absent: every output is written under a temporary
name beside its destination and moved into place only when complete."""
from __future__ import annotations

import contextlib
import glob
import os
import uuid
from pathlib import Path

# Tiled, compressed GeoTIFF that QGIS and GDAL read fast by window.
GTIFF_PROFILE = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256,
                     compress="deflate", predictor=2, BIGTIFF="IF_SAFER")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Outputs get the permissions the user's umask gives new files (some writers create 0600).
FILE_MODE = 0o666 & ~_umask()


def partial_path(path: Path) -> Path:
    """Temporary sibling of `path` keeping its extension, so drivers pick the right format."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")


def remove_partials(paths) -> int:
    """Remove the temporary siblings a killed writer left of outputs that are now complete
    (a Dask worker killed mid-write cannot clean up; its task was rerun elsewhere). Call it
    only when every writer of these outputs is done. Returns how many were removed."""
    removed = 0
    for path in map(Path, filter(None, paths)):
        for leftover in path.parent.glob(f".{glob.escape(path.stem)}.partial-*{glob.escape(path.suffix)}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path; on success move it onto `path`, on any error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        # Cleanup never hides the real error (a failing unlink on a read-only folder, say).
        for leftover in (tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + "-journal"),
                         Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    aux = Path(str(tmp) + ".aux.xml")
    if aux.exists():
        os.replace(aux, Path(str(path) + ".aux.xml"))


@contextlib.contextmanager
def gdal_cache_limit(max_bytes: int = 256 * 1024 ** 2):
    """Cap GDAL's block cache (by default 5 % of RAM) while streaming a large raster, so
    memory depends on our windows and not on GDAL's caching; restored afterwards."""
    import rasterio
    with rasterio.Env(GDAL_CACHEMAX=int(max_bytes)):
        yield


def cache_dir() -> Path:
    """The user's Glacier Mapper cache: $GLACIER_MAPPER_CACHE, else the platform's cache."""
    if os.environ.get("GLACIER_MAPPER_CACHE"):
        return Path(os.environ["GLACIER_MAPPER_CACHE"])
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "glacier_mapper"
