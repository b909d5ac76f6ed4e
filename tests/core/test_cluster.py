"""Scale-out on a real Dask cluster: a `dask scheduler` and two `dask worker` processes of
the engine's environment on 127.0.0.1 (tests/servers.DaskCluster). Every result is compared
with the same step run here, bit for bit; workers are killed and the scheduler lost mid-run."""
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

import glacier_mapper_plugin.core.segmentation.segment as segment_module
from glacier_mapper_plugin.core import cluster
from glacier_mapper_plugin.core.imagery.acquire import AcquireOptions, acquire
from glacier_mapper_plugin.core.cluster import DaskPool, LocalPool
from glacier_mapper_plugin.core.progress import Cancelled, Progress
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment, segment_blocks
from tests.servers import DaskCluster, free_port

OPTIONS = SegmentOptions(tile_size=64, overlap=16, batch_size=4, device="cpu")


class Recorder(Progress):
    """Keeps what reached the client: fractions and messages."""

    def __init__(self, cancel_at=None, on_fraction=None):
        super().__init__()
        self.fractions, self.messages = [], []
        self.cancel_at, self.on_fraction = cancel_at, on_fraction

    def update(self, fraction, message=None):
        self.fractions.append(float(fraction))
        if self.on_fraction:
            self.on_fraction(fraction)
        if self.cancel_at is not None and fraction >= self.cancel_at:
            self.cancelled = True
        super().update(fraction, message)

    def info(self, message):
        self.messages.append(message)

    warning = info


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, user_cache):
    with DaskCluster(tmp_path_factory.mktemp("dask"), env={"OMP_NUM_THREADS": "1"}) as c:
        yield c


@pytest.fixture()
def pool(dask_cluster):
    with DaskPool(dask_cluster.address, Progress()) as p:
        yield p


@pytest.fixture()
def blocks_of_one_row(monkeypatch):
    """Many blocks from a small raster: one tile row each (the client cuts the blocks)."""
    monkeypatch.setattr(segment_module, "BLOCK_MIN_TILE_ROWS", 1)


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.tags(), src.transform, src.crs


def _same_raster(a, b):
    (da, ta, fa, ca), (db, tb, fb, cb) = _read(a), _read(b)
    assert np.array_equal(da, db, equal_nan=True), f"{a} and {b} differ"
    assert (ta, fa, ca) == (tb, fb, cb)


def test_acquisition_on_the_cluster_gives_the_local_files(served_archive, pool, tmp_path):
    inv = served_archive["inventory"]
    glaciers = [(i, g, inv.crs) for i, g in zip(inv.ids, inv.geometries)]
    options = AcquireOptions(date=served_archive["target"], stac_url=served_archive["api"].url,
                             dem=str(served_archive["region"].dem), buffer_m=200.0, max_workers=2)
    served_archive["files"].reset()
    here = acquire(glaciers, options, tmp_path / "here")
    progress = Recorder()
    there = acquire(glaciers, options, tmp_path / "there", progress, pool=pool)
    assert [r.status for r in there] == ["ok"] * 3
    assert [(r.id, r.scene_id, r.masked_pct) for r in there] == [(r.id, r.scene_id, r.masked_pct) for r in here]
    for a, b in zip(here, there):
        _same_raster(a.file, b.file)
        assert Path(b.file).parent == (tmp_path / "there").resolve()
    assert progress.fractions[-1] == 1.0
    assert any(m.startswith("G00") and "ok" in m for m in progress.messages)
    # A rerun on the cluster finds every chip done (resume).
    again = acquire(glaciers, options, tmp_path / "there", Progress(), pool=pool)
    assert [r.status for r in again] == ["exists"] * 3


def test_scenes_and_a_raster_in_blocks_on_the_cluster(region, untrained_model, pool, tmp_path,
                                                      blocks_of_one_row):
    """Several rasters, and each in blocks of tile rows across both workers: the joined
    probability, mask and polygons are those of a whole run here."""
    for scene in (region.imagery_start, region.imagery_end):
        here = segment(scene, untrained_model, tmp_path / "p.tif", tmp_path / "m.tif",
                       dem_path=region.dem, options=OPTIONS)
        progress = Recorder()
        out = tmp_path / f"{scene.stem}.tif"
        there = segment_blocks(scene, untrained_model, out, tmp_path / f"{scene.stem}_mask.tif",
                               tmp_path / f"{scene.stem}.gpkg", region.dem, OPTIONS, progress, pool)
        _same_raster(tmp_path / "p.tif", out)
        _same_raster(tmp_path / "m.tif", tmp_path / f"{scene.stem}_mask.tif")
        assert there.glacier_area_km2 == pytest.approx(here.glacier_area_km2, abs=1e-12)
        assert there.tiles > here.tiles  # each block recomputes the tile row above it
        assert any("block(s)" in m and "2 worker(s)" in m for m in progress.messages)
        assert any("tiles in" in m for m in progress.messages)  # messages from the workers
        assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] == 1.0
        assert (tmp_path / f"{scene.stem}.gpkg").is_file()
    assert not list(tmp_path.glob(".*")), "no block folder or partial file is left"


def test_an_ensemble_in_blocks_on_the_cluster_gives_the_local_files(region, untrained_model, pool, tmp_path,
                                                                   blocks_of_one_row):
    """ENSEMBLE on Dask: each block runs every member, and the join writes the mean and each
    member as the local run does, bit for bit (local vs Dask for ensembles)."""
    from glacier_mapper_plugin.core.segmentation.model_file import new_model
    from tests.conftest import S2_DEM_BANDS
    other = tmp_path / "models" / "untrained_seed2.gmm"
    new_model(other, S2_DEM_BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0], encoder="resnet18", seed=2)
    here_members = [tmp_path / "here" / f"m{k}.tif" for k in range(2)]
    there_members = [tmp_path / "there" / f"m{k}.tif" for k in range(2)]
    segment(region.imagery_end, untrained_model, tmp_path / "here" / "p.tif", tmp_path / "here" / "mask.tif",
            dem_path=region.dem, options=OPTIONS, ensemble=[other], member_paths=here_members)
    segment_blocks(region.imagery_end, untrained_model, tmp_path / "there" / "p.tif", tmp_path / "there" / "mask.tif",
                   None, region.dem, OPTIONS, Progress(), pool, ensemble=[other], member_paths=there_members)
    for name in ("p.tif", "mask.tif", "m0.tif", "m1.tif"):
        _same_raster(tmp_path / "here" / name, tmp_path / "there" / name)
    assert not list((tmp_path / "there").glob(".*")), "no block folder or partial file is left"


def test_cancel_stops_the_tasks_and_leaves_no_file(region, untrained_model, pool, tmp_path,
                                                   blocks_of_one_row):
    progress = Recorder(cancel_at=0.05)
    with pytest.raises(Cancelled):
        segment_blocks(region.imagery_start, untrained_model, tmp_path / "p.tif", tmp_path / "m.tif",
                       None, region.dem, SegmentOptions(tile_size=64, overlap=16, batch_size=1),
                       progress, pool)
    assert not list(tmp_path.iterdir())
    # The tasks stopped: nothing of this run is left on the workers.
    deadline = time.time() + 20
    while pool.client.processing() and any(pool.client.processing().values()) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(pool.client.processing().values())


def test_unreachable_scheduler_names_the_parameter(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2)
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"DASK_SCHEDULER 127\.0\.0\.1:\d+: cannot reach the Dask scheduler"):
        DaskPool(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 30
    with pytest.raises(ValueError, match="DASK_SCHEDULER: no scheduler file"):
        DaskPool("/nowhere/scheduler.json")


def test_local_pool_is_the_default():
    assert isinstance(cluster.open_pool(""), LocalPool)
    assert isinstance(cluster.open_pool(None, threads=3), LocalPool) and cluster.open_pool(None, threads=3).workers == 3


@pytest.mark.parametrize("kill_at", [0.0, 0.3])
def test_a_killed_worker_loses_nothing(region, untrained_model, tmp_path, tmp_path_factory,
                                       blocks_of_one_row, user_cache, kill_at):
    """SIGKILL one of two workers (nanny and all) as the run starts (while the runtime is
    resolved and the inputs are sent: a scatter to the dead worker failed before) or while
    blocks run: its tasks rerun on the other and the joined rasters are still those of a
    whole run here."""
    segment(region.imagery_start, untrained_model, tmp_path / "p.tif", dem_path=region.dem, options=OPTIONS)
    with DaskCluster(tmp_path_factory.mktemp("dask_kill")) as c:
        killed = []

        def kill_once(fraction):
            if fraction > kill_at and not killed:
                killed.append(True)
                threading.Thread(target=c.kill, args=(c.workers[0],)).start()

        with DaskPool(c.address) as p:
            result = segment_blocks(region.imagery_start, untrained_model, tmp_path / "q.tif", None, None,
                                    region.dem, OPTIONS, Recorder(on_fraction=kill_once), p)
            assert killed and c.workers[0].poll() is not None
            assert len(p.client.scheduler_info()["workers"]) == 1
    _same_raster(tmp_path / "p.tif", result.probability)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.tif", "q.tif"]


def test_a_lost_scheduler_is_named_and_the_rerun_resumes(region, untrained_model, tmp_path,
                                                         tmp_path_factory, blocks_of_one_row, user_cache):
    segment(region.imagery_start, untrained_model, tmp_path / "p.tif", dem_path=region.dem, options=OPTIONS)
    folder = tmp_path_factory.mktemp("dask_lost")
    with DaskCluster(folder) as c:
        with DaskPool(c.address) as p:
            def lose_scheduler(fraction):
                if fraction >= 0.3 and c.scheduler.poll() is None:
                    c.kill(c.scheduler)
            with pytest.raises(ValueError, match="DASK_SCHEDULER .*went away.*run again"):
                segment_blocks(region.imagery_start, untrained_model, tmp_path / "q.tif", None, None,
                               region.dem, OPTIONS, Recorder(on_fraction=lose_scheduler), p)
    assert not (tmp_path / "q.tif").exists()
    kept = list(tmp_path.glob(".q.blocks-*/probability_*.tif"))
    assert kept, "the finished blocks are kept for the rerun"
    with DaskCluster(folder) as c, DaskPool(c.address) as p:
        progress = Recorder()
        segment_blocks(region.imagery_start, untrained_model, tmp_path / "q.tif", None, None,
                       region.dem, OPTIONS, progress, p)
    assert any(f"{len(kept)} block(s) done by an earlier run" in m for m in progress.messages)
    _same_raster(tmp_path / "p.tif", tmp_path / "q.tif")
    assert not list(tmp_path.glob(".*"))


def _inventory(region):
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.vector import read_layer
    return Inventory.from_layer(read_layer(region.inventory, "inventory"))


def test_cross_validation_folds_x_members_on_the_cluster(small_region, pool, tmp_path):
    """2 folds x 2 members: four trainings, two fold tests and four predictions as tasks;
    models, metrics and the out-of-fold raster are those of the same run here."""
    from glacier_mapper_plugin.core.segmentation.crossval import cross_validate
    from safetensors.numpy import load_file
    from glacier_mapper_plugin.core.segmentation.train import TrainOptions
    opts = TrainOptions(patch_size=64, encoder="resnet18", epochs=1, batch_size=4, device="cpu", seed=3)
    inv = _inventory(small_region)
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): float sums depend on the threads
    try:
        here = cross_validate([small_region.imagery_start], inv, tmp_path / "here", small_region.dem, 2, opts,
                              members=2)
    finally:
        torch.set_num_threads(threads)
    progress = Recorder()
    there = cross_validate([small_region.imagery_start], inv, tmp_path / "there", small_region.dem, 2, opts,
                           progress, members=2, pool=pool)
    assert [r.scores for r in there.results] == [r.scores for r in here.results]
    assert [[m.name for m in r.members] for r in there.results] == [["fold_1.gmm", "fold_1_seed4.gmm"],
                                                                    ["fold_2.gmm", "fold_2_seed4.gmm"]]
    for a, b in zip(here.results, there.results):
        for ma, mb in zip(a.members, b.members):
            wa, wb = load_file(ma), load_file(mb)
            pass
    w0, w1 = load_file(there.results[0].members[0]), load_file(there.results[0].members[1])
    assert not all(np.array_equal(w0[k], w1[k]) for k in w0), "members differ by their seed"
    _same_raster(here.predictions[0], there.predictions[0])
    assert any("fold 2 member 2" in m for m in progress.messages)
    assert not list((tmp_path / "there").glob(".*"))


def test_area_change_per_chip_on_the_cluster(served_archive, untrained_model, pool, tmp_path):
    """The acquired per-glacier chips segmented, then area change with a task per chip: the
    same table as here."""
    from glacier_mapper_plugin.core.change.area_change import AreaChangeOptions, area_change
    inv = served_archive["inventory"]
    chips = sorted(served_archive["region"].folder.glob("S2_L2A_*.tif"))
    probs = []
    for k, chip in enumerate(chips):
        probs.append(segment(chip, untrained_model, tmp_path / f"p{k}.tif", dem_path=served_archive["region"].dem,
                             options=OPTIONS).probability)
    opts = AreaChangeOptions(start_year=2015.6, end_year=2023.6, min_recall=0.0, max_masked=1.0)
    here = area_change(inv, probs[:1], probs[1:], options=opts)
    progress = Recorder()
    there = area_change(inv, probs[:1], probs[1:], options=opts, progress=progress, pool=pool)
    assert there.glaciers == here.glaciers and there.regional == here.regional
    assert progress.fractions[-1] == 1.0


def _hef_glaciers(folder):
    """Hintereisferner's RGI outline and three copies of it moved a few hundred metres: four
    glaciers on the DEM and under the climate (a test inventory, not a real one)."""
    from shapely import affinity

    from glacier_mapper_plugin.core.vector import read_layer
    layer = read_layer(folder / "Hintereisferner_RGI6.shp")
    g = layer.geometries[0]
    return [(f"G{k}", affinity.translate(g, dx, dy), layer.crs)
            for k, (dx, dy) in enumerate([(0, 0), (0.004, 0.0), (-0.004, 0.002), (0.0, -0.003)])]


def test_mass_balance_per_glacier_on_the_cluster(shared_data, pool, tmp_path):
    """A Mass Balance Machine trained on Hintereisferner's WGMS band balances with HISTALP
    (shared/data/oggm_hef), then applied to four glaciers, a task each: the same series and
    rasters as here."""
    from glacier_mapper_plugin.engine.steps import STEPS
    from glacier_mapper_plugin.core.massbalance.workflow import predict_mbm
    from tests.core.massbalance.test_model import hef_band_csv
    folder = shared_data / "oggm_hef"
    model = tmp_path / "mbm.json"
    STEPS["train_mass_balance"](dict(OBSERVATIONS=str(hef_band_csv(folder, tmp_path / "hef.csv")), UNITS="mm",
                                     CLIMATE=[str(folder / "histalp_merged_hef.nc")], DEM=str(folder / "hef_srtm.tif"),
                                     N_ESTIMATORS=40, FOLDS=3, OUTPUT_MODEL=str(model)), Progress())
    glaciers = _hef_glaciers(folder)
    args = (model, glaciers, [folder / "histalp_merged_hef.nc"], folder / "hef_srtm.tif", 2000, 2003)
    here = predict_mbm(*args, tmp_path / "here")
    progress = Recorder()
    there = predict_mbm(*args, tmp_path / "there", progress=progress, pool=pool)
    assert [s.rows for s in there] == [s.rows for s in here] and len(here) == 4
    assert [s.profile for s in there] == [s.profile for s in here]
    for a, b in zip(here, there):
        _same_raster(a.raster, b.raster)
    assert sum("mean Ba" in m for m in progress.messages) == 4


def test_evaluation_in_blocks_on_the_cluster(region, untrained_model, pool, tmp_path, monkeypatch):
    import glacier_mapper_plugin.core.segmentation.evaluate as ev
    monkeypatch.setattr(ev, "BLOCK_ROWS", 64)  # the client cuts the blocks
    prob = segment(region.imagery_end, untrained_model, tmp_path / "p.tif", dem_path=region.dem,
                   options=OPTIONS).probability
    inv = _inventory(region)
    here = ev.evaluate(prob, inv)
    progress = Recorder()
    there = ev.evaluate(prob, inv, progress=progress, pool=pool)
    assert there.overall == here.overall
    nan_safe = lambda recs: [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}  # noqa: E731
                             for r in recs]
    assert nan_safe(there.glaciers) == nan_safe(here.glaciers)
    assert progress.fractions[-1] == 1.0
