"""Shared fixtures: the plugin on sys.path, its dependency folder, the provider registered in
the pytest-qgis application, a synthetic region made once per session, and ../shared/data."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from glacier_mapper_plugin import dependencies  # noqa: E402

dependencies.add_to_sys_path()

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def region(tmp_path_factory):
    """The default synthetic region (seed 42), written once for the whole session."""
    from glacier_mapper_plugin.core.synthetic import make_region
    return make_region(tmp_path_factory.mktemp("region"), seed=42)


@pytest.fixture(scope="session")
def provider(qgis_app, qgis_processing):
    from qgis.core import QgsApplication

    from glacier_mapper_plugin.provider import GlacierMapperProvider
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("glacier_mapper")
    if existing is not None:
        return existing
    prov = GlacierMapperProvider()
    assert registry.addProvider(prov)
    return prov


@pytest.fixture(scope="session")
def processing(provider):
    """QGIS's `processing` module (importable once pytest-qgis has set up Processing)."""
    import processing as qgis_processing_module
    return qgis_processing_module


S2_DEM_BANDS = ["B2", "B3", "B4", "B8", "B12", "DEM"]


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory):
    """An untrained resnet18 U-Net for B2..B12 + DEM with plausible normalisation."""
    from glacier_mapper_plugin.core.model_file import new_model
    path = tmp_path_factory.mktemp("models") / "untrained.gmm"
    new_model(path, S2_DEM_BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0],
              encoder="resnet18", seed=1)
    return path


@pytest.fixture(scope="session")
def small_region(tmp_path_factory):
    """A 2 km region with 3 glaciers: fast training tests."""
    from glacier_mapper_plugin.core.synthetic import make_region
    return make_region(tmp_path_factory.mktemp("small"), seed=5, size_km=2.0, n_glaciers=3)


@pytest.fixture(scope="session")
def served_archive(tmp_path_factory):
    """A cloud-free 2 km region's Sentinel-2 archive (see tests/s2_archive.py) behind a real
    range-capable file server and `rustac serve`, both on 127.0.0.1."""
    import datetime as dt

    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.synthetic import make_region
    from glacier_mapper_plugin.core.vector import read_layer
    from tests.s2_archive import build_archive, scenes_for
    from tests.servers import RangeServer, StacApi

    target = dt.date(2023, 9, 1)
    root = tmp_path_factory.mktemp("archive")
    region = make_region(root / "region", seed=5, size_km=2.0, n_glaciers=3, clouds=False)
    with RangeServer(root) as files:
        items, _ = build_archive(region, root, files.url, scenes_for(target))
        api = StacApi([items])
        try:
            yield dict(region=region, files=files, api=api, items=items, root=root, target=target,
                       inventory=Inventory.from_layer(read_layer(region.inventory, "inventory")))
        finally:
            api.close()
