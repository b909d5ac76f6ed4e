"""Ensemble members in one network (core.segmentation.ensemble; segment's ENSEMBLE): the same
map as one run per member, whatever the members' order, the runtime or the cluster."""
import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.segmentation.model_file import load_model, new_model, save_model
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment, segment_blocks
from tests.conftest import S2_DEM_BANDS
from tests.core.segmentation.test_backends import Log

SMALL = dict(tile_size=128, overlap=32, batch_size=4, precision="fp32", backend="torch")
NORM = dict(mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0])


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.tags(), src.descriptions[0]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three untrained resnet18 members of one normalisation (as train_model MEMBERS writes
    them: other seeds), the third with its own temperature."""
    folder = tmp_path_factory.mktemp("members")
    paths = [folder / f"m{seed}.gmm" for seed in (1, 2, 3)]
    for seed, path in zip((1, 2, 3), paths):
        new_model(path, S2_DEM_BANDS, encoder="resnet18", seed=seed, **NORM)
    net, header = load_model(paths[2])
    header.temperature = 2.5
    save_model(paths[2], net, header)
    return paths


@pytest.fixture(scope="module")
def singles(region, members, tmp_path_factory):
    """Each member's own probability, one run each (what a user did before ENSEMBLE)."""
    folder = tmp_path_factory.mktemp("singles")
    return [_read(segment(region.imagery_end, m, folder / f"{k}.tif", dem_path=region.dem,
                          options=SegmentOptions(**SMALL)).probability)[0] for k, m in enumerate(members)]


def test_members_are_their_own_runs_and_the_map_is_their_mean(region, members, singles, tmp_path):
    outs = [tmp_path / f"member{k}.tif" for k in range(3)]
    res = segment(region.imagery_end, members[0], tmp_path / "p.tif", tmp_path / "m.tif", dem_path=region.dem,
                  options=SegmentOptions(**SMALL), ensemble=members[1:], member_paths=outs)
    for k, out in enumerate(outs):
        prob, tags, description = _read(out)
        # one network, the same numbers; the third member's own temperature (2.5) is applied to it
        np.testing.assert_allclose(prob, singles[k], atol=1e-6, equal_nan=True)
        assert tags["MODEL"] == members[k].name and description.endswith(f"ensemble member {k + 1}")
    mean, tags, description = _read(res.probability)
    with np.errstate(invalid="ignore"):
        expected = np.mean(singles, axis=0)
    np.testing.assert_allclose(mean, expected, atol=1e-6, equal_nan=True)
    mask = _read(res.mask)[0]
    valid = np.isfinite(mean)
    assert ((mask[valid] == 1) == (mean[valid] >= 0.5)).all() and (mask[~valid] == 255).all()
    assert tags["MEMBERS"] == "3" and tags["MEMBER_PATHS"].split("|") == [str(m) for m in members]
    assert description.endswith("ensemble mean")
    # the members differ (else the test proves nothing)
    assert np.nanmax(np.abs(singles[0] - singles[1])) > 0.05


def test_member_order_does_not_change_the_map(region, members, tmp_path):
    """Ordering invariance: the mean of the members is the same whichever is MODEL."""
    a = segment(region.imagery_end, members[0], tmp_path / "a.tif", tmp_path / "am.tif", dem_path=region.dem,
                options=SegmentOptions(**SMALL), ensemble=members[1:])
    b = segment(region.imagery_end, members[2], tmp_path / "b.tif", tmp_path / "bm.tif", dem_path=region.dem,
                options=SegmentOptions(**SMALL), ensemble=[members[1], members[0], members[2]])  # MODEL repeated
    pa, pb = _read(a.probability)[0], _read(b.probability)[0]
    np.testing.assert_allclose(pa, pb, atol=1e-6, equal_nan=True)
    ma, mb = _read(a.mask)[0], _read(b.mask)[0]
    assert (ma == mb).mean() > 0.9999  # only a pixel on the threshold to the last bit could differ


def test_one_stacked_graph_on_onnxruntime_gives_the_torch_map(region, members, tmp_path):
    pytest.importorskip("onnxruntime")
    runs = {b: segment(region.imagery_end, members[0], tmp_path / f"{b}.tif", dem_path=region.dem,
                       options=SegmentOptions(**dict(SMALL, backend=b)), ensemble=members[1:])
            for b in ("torch", "onnxruntime")}
    assert runs["onnxruntime"].backend == "onnxruntime"
    pt, po = (_read(runs[b].probability)[0] for b in ("torch", "onnxruntime"))
    valid = np.isfinite(pt)
    assert np.array_equal(valid, np.isfinite(po))
    assert np.abs(pt[valid] - po[valid]).mean() <= 0.002
    assert ((pt[valid] >= 0.5) == (po[valid] >= 0.5)).mean() >= 0.999


def test_blocks_join_each_member_as_a_whole_run(region, members, tmp_path):
    """segment_blocks (here on the local pool, as on Dask) joins the mean and every member."""
    opts = SegmentOptions(**dict(SMALL, probability_dtype="uint8"))
    whole_members = [tmp_path / f"w{k}.tif" for k in range(3)]
    block_members = [tmp_path / "blocks" / f"b{k}.tif" for k in range(3)]
    whole = segment(region.imagery_end, members[0], tmp_path / "w.tif", tmp_path / "wm.tif", dem_path=region.dem,
                    options=opts, ensemble=members[1:], member_paths=whole_members)
    (tmp_path / "blocks").mkdir()
    blocks = segment_blocks(region.imagery_end, members[0], tmp_path / "blocks" / "b.tif",
                            tmp_path / "blocks" / "bm.tif", dem_path=region.dem, options=opts,
                            ensemble=members[1:], member_paths=block_members)
    for a, b in [(whole.probability, blocks.probability), (whole.mask, blocks.mask),
                 *zip(whole_members, block_members)]:
        assert np.array_equal(_read(a)[0], _read(b)[0]), (a, b)
    assert sorted(p.name for p in (tmp_path / "blocks").iterdir()) == ["b.tif", "b0.tif", "b1.tif", "b2.tif",
                                                                       "bm.tif"]


def test_members_that_cannot_share_an_input_are_refused_before_any_work(region, members, tmp_path):
    other_bands = tmp_path / "rgb.gmm"
    new_model(other_bands, ["B2", "B3", "B4"], encoder="resnet18", seed=4)
    copy = tmp_path / "copy.gmm"
    copy.write_bytes(members[1].read_bytes())
    out = tmp_path / "out"
    cases = [(dict(ensemble=[other_bands]), "ENSEMBLE: rgb.gmm reads bands B2, B3, B4"),
             (dict(ensemble=[members[1], copy]), "copy.gmm is the same model as m2.gmm"),
             (dict(ensemble=[members[1]], options=SegmentOptions(**dict(SMALL, precision="int8",
                                                                        backend="onnxruntime"))),
              "PRECISION int8 quantises one model at a time"),
             (dict(member_paths=[out / "a.tif"]), "OUTPUT_MEMBERS writes each ensemble member"),
             (dict(ensemble=[tmp_path / "missing.gmm"]), "ENSEMBLE: ")]
    for kwargs, message in cases:
        kwargs.setdefault("options", SegmentOptions(**SMALL))
        with pytest.raises(ValueError, match=message):
            segment(region.imagery_end, members[0], out / "p.tif", out / "m.tif", dem_path=region.dem, **kwargs)
        assert not out.exists()


def test_a_member_trained_apart_sees_the_tiles_in_its_own_statistics(region, members, singles, tmp_path):
    """Models trained apart (train_model run once per seed, other training glaciers) normalise
    the bands with other statistics: in the ensemble each member gets the tiles re-normalised
    to its own, so its raster is its own run's (exactly where the tile has no no-data pixel;
    at no-data pixels it sees MODEL's band mean instead of its own)."""
    apart = tmp_path / "apart.gmm"
    net, header = load_model(members[1])
    header.mean = [0.27, 0.24, 0.26, 0.3, 0.22, 2500.0]
    header.std = [0.22, 0.19, 0.2, 0.25, 0.18, 450.0]
    save_model(apart, net, header)
    alone = segment(region.imagery_start, apart, tmp_path / "alone.tif", dem_path=region.dem,
                    options=SegmentOptions(**SMALL))
    progress = Log()
    res = segment(region.imagery_start, members[0], tmp_path / "p.tif", dem_path=region.dem,
                  options=SegmentOptions(**SMALL), ensemble=[apart], member_paths=[tmp_path / "m0.tif",
                                                                                   tmp_path / "m1.tif"],
                  progress=progress)
    own, together = _read(alone.probability)[0], _read(tmp_path / "m1.tif")[0]
    from scipy import ndimage
    with rasterio.open(region.imagery_start) as src:
        nodata = src.read(1) == 0
    assert 0.001 < nodata.mean() < 0.05  # the scene has a no-data strip: the one place members can differ
    d = np.abs(np.nan_to_num(together) - np.nan_to_num(own))
    off = d > 2e-5
    assert off.mean() <= 0.001 and d.max() <= 1e-3
    assert (ndimage.distance_transform_edt(~nodata)[off] <= SMALL["tile_size"]).all()  # only near no data
    assert any("apart.gmm normalise(s) the bands with other statistics" in m for m in progress.lines)
    mean = _read(res.probability)[0]
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(mean, (_read(tmp_path / "m0.tif")[0] + together) / 2, atol=1e-6, equal_nan=True)


def test_members_trained_apart_on_the_same_rasters_are_accepted(region, members, tmp_path):
    """Two trainings of the same rasters (train_model run twice, other seeds) agree on the
    normalisation only to the last digits (moments merged in another order): bench_accuracy's
    seeds did. That is one input for all; a thousandth of a standard deviation is the limit."""
    near = tmp_path / "near.gmm"
    new_model(near, S2_DEM_BANDS, encoder="resnet18", seed=6, mean=[0.25 * (1 + 3e-7)] * 5 + [2600.0004],
              std=[0.2 * (1 - 2e-7)] * 5 + [400.00003])
    res = segment(region.imagery_end, members[0], tmp_path / "p.tif", options=SegmentOptions(**SMALL),
                  dem_path=region.dem, ensemble=[near])
    assert res.probability.is_file()
