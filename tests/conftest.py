"""Shared fixtures for both tiers.

The engine tier (tests/core, tests/data, tests/engine) runs in the engine's venv and builds
data with `core` directly. The QGIS tiers (tests/algorithms, tests/headless, tests/desktop)
run in QGIS's own Python, which must never import the engine's packages, so the same
fixtures build their data by running the engine's interpreter (`in_engine`)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_QGIS = importlib.util.find_spec("qgis") is not None
ENGINE_PYTHON = Path(os.environ.get("VENV", ROOT / ".venv")) / "bin" / "python"
S2_DEM_BANDS = ["B2", "B3", "B4", "B8", "B12", "DEM"]

if IN_QGIS:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # Algorithms find the engine as a user's QGIS would, through the profile's record; the
    # variable makes the tests independent of which profile pytest-qgis picks.
    os.environ.setdefault("GLACIER_MAPPER_ENGINE", str(ENGINE_PYTHON))


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory):
    """The user's cache (resume files, patch caches) in the session's temp folder: tests
    never write into ~/.cache, and never find a cache a previous run left."""
    path = tmp_path_factory.mktemp("user_cache")
    os.environ["GLACIER_MAPPER_CACHE"] = str(path)
    return path


def in_engine(code: str, timeout: float = 600):
    """Run Python `code` in the engine's interpreter; it prints one JSON value last."""
    out = subprocess.run([str(ENGINE_PYTHON), "-c", code], capture_output=True, text=True, timeout=timeout,
                         cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        raise RuntimeError(f"engine helper failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_region(folder, **kw):
    """core.imagery.synthetic.make_region here or through the engine: an object with the same
    attributes (paths as Path)."""
    if not IN_QGIS:
        from glacier_mapper_plugin.core.imagery.synthetic import make_region as make
        return make(folder, **kw)
    fields = ("folder", "imagery_start", "imagery_end", "dem", "inventory", "truth_start", "truth_end")
    got = in_engine(
        "import json; from glacier_mapper_plugin.core.imagery.synthetic import make_region as m; "
        f"r = m({str(folder)!r}, **{kw!r}); "
        f"print(json.dumps(dict({{k: str(getattr(r, k)) for k in {fields!r}}}, n_glaciers=r.n_glaciers, "
        "true_regional_rate_pct_yr=r.true_regional_rate_pct_yr, start_date=str(r.start_date), "
        "end_date=str(r.end_date))))")
    return SimpleNamespace(**{k: (Path(v) if k in fields else v) for k, v in got.items()})


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))} if folder.is_dir() else {}


@pytest.fixture(scope="session", autouse=True)
def shared_data_untouched():
    """Tests never write next to their inputs: ../shared/data is the same after the session
    (a .aux.xml beside hef_srtm.tif once appeared there)."""
    before = _snapshot(SHARED_DATA)
    yield
    after = _snapshot(SHARED_DATA)
    assert after == before, f"tests changed ../shared/data: {sorted(set(after) ^ set(before))}"


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def region(tmp_path_factory):
    """The default synthetic region (seed 42), written once for the whole session."""
    return make_region(tmp_path_factory.mktemp("region"), seed=42)


@pytest.fixture(scope="session")
def small_region(tmp_path_factory):
    """A 2 km region with 3 glaciers: fast training tests."""
    return make_region(tmp_path_factory.mktemp("small"), seed=5, size_km=2.0, n_glaciers=3)


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory):
    """An untrained resnet18 U-Net for B2..B12 + DEM with plausible normalisation."""
    path = tmp_path_factory.mktemp("models") / "untrained.gmm"
    code = (f"from glacier_mapper_plugin.core.segmentation.model_file import new_model; "
            f"new_model({str(path)!r}, {S2_DEM_BANDS!r}, mean=[0.25] * 5 + [2600.0], "
            f"std=[0.2] * 5 + [400.0], encoder='resnet18', seed=1); print('null')")
    if IN_QGIS:
        in_engine(code)
    else:
        exec(code.replace("; print('null')", ""))
    return path


@pytest.fixture(scope="session")
def served_archive(tmp_path_factory):
    """A cloud-free 2 km region's Sentinel-2 archive (see tests/s2_archive.py) behind a real
    range-capable file server and `rustac serve`, both on 127.0.0.1."""
    import datetime as dt

    from tests.servers import RangeServer, StacApi

    target = dt.date(2023, 9, 1)
    root = tmp_path_factory.mktemp("archive")
    with RangeServer(root) as files:
        if IN_QGIS:
            built = in_engine(
                "import json, datetime as dt; from pathlib import Path; "
                "from glacier_mapper_plugin.core.imagery.synthetic import make_region; "
                "from tests.s2_archive import build_archive, scenes_for; "
                f"r = make_region(Path({str(root)!r}) / 'region', seed=5, size_km=2.0, n_glaciers=3, clouds=False); "
                f"items, _ = build_archive(r, Path({str(root)!r}), {files.url!r}, scenes_for(dt.date(2023, 9, 1))); "
                "print(json.dumps({'items': str(items), 'folder': str(r.folder)}))")
            items = Path(built["items"])
            region = make_region_paths(Path(built["folder"]))
            inventory = None
        else:
            from glacier_mapper_plugin.core.labels import Inventory
            from glacier_mapper_plugin.core.imagery.synthetic import make_region as make
            from glacier_mapper_plugin.core.vector import read_layer
            from tests.s2_archive import build_archive, scenes_for
            region = make(root / "region", seed=5, size_km=2.0, n_glaciers=3, clouds=False)
            items, _ = build_archive(region, root, files.url, scenes_for(target))
            inventory = Inventory.from_layer(read_layer(region.inventory, "inventory"))
        api = StacApi([items])
        try:
            yield dict(region=region, files=files, api=api, items=items, root=root, target=target,
                       inventory=inventory)
        finally:
            api.close()


def make_region_paths(folder: Path):
    """The file layout of a synthetic region folder (core.imagery.synthetic.make_region)."""
    def one(pattern):
        found = sorted(folder.glob(pattern))
        return found
    scenes = one("S2_L2A_*.tif")
    truths = one("glacier_ids_*.tif")
    return SimpleNamespace(folder=folder, imagery_start=scenes[0], imagery_end=scenes[-1], dem=folder / "dem.tif",
                           inventory=folder / "inventory.gpkg", truth_start=truths[0], truth_end=truths[-1])
