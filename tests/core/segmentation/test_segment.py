from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
import rasterio
from rasterio.warp import calculate_default_transform, reproject
from shapely.geometry import box

from glacier_mapper_plugin.core.segmentation.model_file import new_model
from glacier_mapper_plugin.core.progress import Cancelled, Progress
from glacier_mapper_plugin.core.segmentation.segment import (SegmentOptions, aligned_stride, blend_weights,
                                                       effective_tile, segment, tile_origins)
from glacier_mapper_plugin.core.vector import read_layer

SMALL = dict(tile_size=128, overlap=32, batch_size=4, precision="fp32")


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile


def test_tile_origins_cover_and_keep_the_networks_grid():
    assert tile_origins(400, 128, 96) == [0, 96, 192, 288]   # the last ends 16 px beyond, mirrored
    assert tile_origins(100, 128, 96) == [0]
    assert tile_origins(128, 128, 96) == [0]
    assert aligned_stride(128, 48) == 64 and aligned_stride(64, 16) == 32 and aligned_stride(512, 128) == 384
    assert effective_tile(1024, 600, 400) == 608 and effective_tile(256, 600, 400) == 256


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 5000), tile=st.sampled_from([64, 128, 256, 288, 512, 1024]),
       overlap=st.integers(0, 512))
def test_every_tile_starts_on_the_32_pixel_grid_and_the_raster_is_covered(length, tile, overlap):
    """The U-Net sees every pixel in the same phase whatever the tile size: all origins are
    multiples of 32, the tiles cover [0, length), and none reaches 32 pixels beyond it."""
    assume(overlap <= tile // 2)
    stride = aligned_stride(tile, overlap)
    starts = tile_origins(length, tile, stride)
    assert all(s % 32 == 0 for s in starts) and starts == sorted(set(starts))
    assert starts[0] == 0 and (starts[-1] + tile >= length)
    assert length <= tile or starts[-1] + tile < length + 32
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))  # no gap, never less overlap


def test_blend_weights_ignore_the_outer_quarter_of_the_overlap():
    w = blend_weights(64, 16)
    assert w.min() > 0 and w.max() == 1.0 and w[32, 32] == 1.0
    assert np.all(w[32, :4] == w[32, 0]) and w[32, 0] <= 1e-3     # the tile's own border: no say
    assert np.all(np.diff(w[32, 4:12]) > 0) and np.all(w[32, 12:16] == 1.0)  # a smooth ramp to the core
    ramp = w[32, :16]
    np.testing.assert_allclose(ramp[4:12] + ramp[4:12][::-1], 1.0, atol=1e-6)  # neighbours sum to one


def test_outputs_georeferenced_with_nodata(region, untrained_model, tmp_path):
    res = segment(region.imagery_end, untrained_model, tmp_path / "p.tif", tmp_path / "m.tif",
                  tmp_path / "g.gpkg", dem_path=region.dem, options=SegmentOptions(**SMALL))
    prob, prof = _read(res.probability)
    mask, mprof = _read(res.mask)
    with rasterio.open(region.imagery_end) as src:
        assert prof["crs"] == src.crs and prof["transform"] == src.transform
        assert (prof["width"], prof["height"]) == (src.width, src.height)
        nodata = src.read(1) == 0
    assert prof["dtype"] == "float32" and prof["tiled"]
    assert np.isnan(prob[nodata]).all() and np.isfinite(prob[~nodata]).all()
    assert (mask[nodata] == 255).all() and set(np.unique(mask[~nodata])) <= {0, 1}
    assert ((prob[~nodata] >= 0.5) == (mask[~nodata] == 1)).all()
    polys = read_layer(res.polygons)
    assert polys.records and all(r["area_km2"] >= 0 for r in polys.records)
    assert res.device == "cpu" and res.precision == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.gpkg", "m.tif", "p.tif"]


def _seam_ratio(prob, stride, tile, width):
    jumps = np.abs(np.diff(prob, axis=1))
    borders = set()
    for x in tile_origins(width, tile, stride)[1:]:
        borders.update({x - 1, x + tile - stride - 1})
    borders = sorted(b for b in borders if 0 <= b < width - 1)
    inner = [c for c in range(width - 1) if all(abs(c - b) > 3 for b in borders)]
    return np.nanmean(jumps[:, borders]) / np.nanmean(jumps[:, inner])


def test_blending_leaves_no_seams(region, untrained_model, tmp_path):
    """Column-to-column jumps at tile borders are no larger than elsewhere with blending;
    without overlap they are (which shows the test can see a seam)."""
    with rasterio.open(region.imagery_end) as src:
        width = src.width
    seams = {}
    for overlap in (0, 64):
        out = tmp_path / f"p{overlap}.tif"
        segment(region.imagery_end, untrained_model, out, dem_path=region.dem,
                options=SegmentOptions(tile_size=128, overlap=overlap, precision="fp32"))
        seams[overlap] = _seam_ratio(_read(out)[0], aligned_stride(128, overlap), 128, width)
    assert seams[64] < 1.3
    assert seams[0] > seams[64] * 1.3


def test_tiled_matches_single_tile_inside(region, untrained_model, tmp_path):
    segment(region.imagery_end, untrained_model, tmp_path / "one.tif", dem_path=region.dem,
            options=SegmentOptions(tile_size=416, overlap=0, precision="fp32"))
    segment(region.imagery_end, untrained_model, tmp_path / "tiled.tif", dem_path=region.dem,
            options=SegmentOptions(tile_size=192, overlap=64, precision="fp32"))
    a, b = _read(tmp_path / "one.tif")[0], _read(tmp_path / "tiled.tif")[0]
    ok = np.isfinite(a) & np.isfinite(b)
    assert np.mean(np.abs(a[ok] - b[ok])) < 0.05


def test_bf16_agrees_with_fp32(region, untrained_model, tmp_path):
    masks = {}
    for precision in ("fp32", "bf16"):
        segment(region.imagery_end, untrained_model, tmp_path / f"p{precision}.tif",
                tmp_path / f"m{precision}.tif", dem_path=region.dem,
                options=SegmentOptions(tile_size=256, overlap=32, precision=precision))
        masks[precision] = _read(tmp_path / f"m{precision}.tif")[0]
    assert np.mean(masks["fp32"] == masks["bf16"]) >= 0.999


def test_dem_in_another_crs_is_reprojected_on_the_fly(region, untrained_model, tmp_path):
    with rasterio.open(region.dem) as src:
        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        prof = dict(src.profile, crs="EPSG:4326", transform=transform, width=w, height=h)
        with rasterio.open(tmp_path / "dem4326.tif", "w", **prof) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1))
    opts = SegmentOptions(**SMALL)
    segment(region.imagery_end, untrained_model, tmp_path / "a.tif", dem_path=region.dem, options=opts)
    segment(region.imagery_end, untrained_model, tmp_path / "b.tif", dem_path=tmp_path / "dem4326.tif", options=opts)
    a, b = _read(tmp_path / "a.tif")[0], _read(tmp_path / "b.tif")[0]
    inner = np.s_[20:-20, 20:-20]
    ok = np.isfinite(a[inner]) & np.isfinite(b[inner])
    assert np.mean(np.abs(a[inner][ok] - b[inner][ok])) < 0.02


def test_band_mismatch_is_named(region, tmp_path):
    new_model(tmp_path / "b11.gmm", ["B2", "B11"], encoder="resnet18")
    with pytest.raises(ValueError, match="no band for B11"):
        segment(region.imagery_end, tmp_path / "b11.gmm", tmp_path / "p.tif")
    assert not (tmp_path / "p.tif").exists()


def test_missing_dem_is_named(region, untrained_model, tmp_path):
    with pytest.raises(ValueError, match="DEM"):
        segment(region.imagery_end, untrained_model, tmp_path / "p.tif")


def test_geographic_input_refused_with_utm_hint(region, untrained_model, tmp_path):
    with rasterio.open(region.imagery_end) as src:
        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        prof = dict(src.profile, crs="EPSG:4326", transform=transform, width=w, height=h)
        with rasterio.open(tmp_path / "geo.tif", "w", **prof) as dst:
            dst.descriptions = src.descriptions
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(dst, b))
    with pytest.raises(ValueError, match="geographic CRS.*EPSG:32632"):
        segment(tmp_path / "geo.tif", untrained_model, tmp_path / "p.tif", dem_path=region.dem)


class _CancelAfter(Progress):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def update(self, fraction, message=None):
        self.n -= 1
        self.cancelled = self.n <= 0
        super().update(fraction, message)


def test_cancel_leaves_no_file(region, untrained_model, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        segment(region.imagery_end, untrained_model, out / "p.tif", out / "m.tif", out / "g.gpkg",
                dem_path=region.dem, options=SegmentOptions(tile_size=64, overlap=16, batch_size=2,
                                                            precision="fp32"),
                progress=_CancelAfter(2))
    assert list(out.iterdir()) == []


def test_mask_layer_runs_only_nearby_tiles(region, untrained_model, tmp_path):
    with rasterio.open(region.imagery_end) as src:
        left, top = src.bounds.left, src.bounds.top
    near = box(left + 100, top - 300, left + 300, top - 100)
    res = segment(region.imagery_end, untrained_model, tmp_path / "p.tif", dem_path=region.dem,
                  options=SegmentOptions(tile_size=128, overlap=32, precision="fp32",
                                         mask_geometries=[near], mask_buffer_m=50))
    prob = _read(res.probability)[0]
    assert res.tiles_skipped > 0 and res.tiles < res.tiles + res.tiles_skipped
    assert np.isfinite(prob[10:30, 10:30]).all()
    assert np.isnan(prob[-50:, -50:]).all()


def test_mask_layer_rows_far_apart(region, untrained_model, tmp_path):
    """Two glaciers more than a tile apart: the rows between are written as no data, and
    pixels inside each polygon get exactly the values of an unmasked run (same tiles)."""
    with rasterio.open(region.imagery_end) as src:
        left, top, bottom = src.bounds.left, src.bounds.top, src.bounds.bottom
        res_m = src.res[0]
    upper = box(left + 400, top - 600, left + 900, top - 200)
    lower = box(left + 400, bottom + 200, left + 900, bottom + 600)
    opts = dict(tile_size=64, overlap=16, precision="fp32", streams=1)
    full = segment(region.imagery_end, untrained_model, tmp_path / "full.tif", dem_path=region.dem,
                   options=SegmentOptions(**opts))
    part = segment(region.imagery_end, untrained_model, tmp_path / "part.tif", dem_path=region.dem,
                   options=SegmentOptions(mask_geometries=[upper, lower], **opts))
    a, b = _read(full.probability)[0], _read(part.probability)[0]
    # Rows further than a tile from both polygons: no tile touches them.
    gap = slice(int(600 / res_m) + 64, b.shape[0] - int(600 / res_m) - 64)
    assert gap.stop - gap.start > 64
    assert np.isnan(b[gap]).all()
    for poly in (upper, lower):
        r0, r1 = sorted(int((top - y) / res_m) for y in (poly.bounds[1], poly.bounds[3]))
        c0, c1 = (int((x - left) / res_m) for x in (poly.bounds[0], poly.bounds[2]))
        inside = np.s_[r0 + 1:r1 - 1, c0 + 1:c1 - 1]
        assert np.isfinite(b[inside]).all()
        np.testing.assert_array_equal(a[inside], b[inside])


def test_parallel_cpu_streams_match_one_stream(region, untrained_model, tmp_path):
    probs = {}
    for streams in (1, 2):
        res = segment(region.imagery_end, untrained_model, tmp_path / f"p{streams}.tif",
                      dem_path=region.dem, options=SegmentOptions(
                          tile_size=128, overlap=32, batch_size=3, precision="fp32", streams=streams))
        probs[streams] = _read(res.probability)[0]
    np.testing.assert_allclose(probs[1], probs[2], atol=1e-5)
    assert np.isnan(probs[1]).sum() == np.isnan(probs[2]).sum() > 0


def test_uint8_probability(region, untrained_model, tmp_path):
    segment(region.imagery_end, untrained_model, tmp_path / "p.tif", dem_path=region.dem,
            options=SegmentOptions(probability_dtype="uint8", **SMALL))
    prob, prof = _read(tmp_path / "p.tif")
    assert prof["dtype"] == "uint8" and prof["nodata"] == 255
    valid = prob[prob != 255]
    assert valid.max() <= 100


def test_small_raster_is_mirrored_not_zero_padded(region, untrained_model, tmp_path):
    with rasterio.open(region.imagery_end) as src:
        win = rasterio.windows.Window(150, 150, 50, 40)
        prof = dict(src.profile, width=50, height=40, transform=src.window_transform(win))
        with rasterio.open(tmp_path / "chip.tif", "w", **prof) as dst:
            dst.write(src.read(window=win))
            dst.descriptions = src.descriptions
            dst.update_tags(**src.tags())
    res = segment(tmp_path / "chip.tif", untrained_model, tmp_path / "p.tif", dem_path=region.dem,
                  options=SegmentOptions(**SMALL))
    prob, prof = _read(res.probability)
    assert prob.shape == (40, 50) and np.isfinite(prob).all()


def test_conv_bn_fusion_keeps_outputs(untrained_model):
    import torch

    from glacier_mapper_plugin.core.segmentation.model_file import load_model
    from glacier_mapper_plugin.core.segmentation.segment import fuse_conv_bn
    net, _ = load_model(untrained_model)
    # Non-trivial BatchNorm statistics, as in a trained network.
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
    x = torch.randn(2, 6, 64, 64, generator=gen)
    with torch.inference_mode():
        before = net(x)
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        fuse_conv_bn(net)
        after = net(x)
    assert n_bn > 20
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 0
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_prepared_model_kept_for_batch_runs_and_reloaded_when_rewritten(tmp_path):
    from glacier_mapper_plugin.core.segmentation.segment import prepared_model
    path = tmp_path / "m.gmm"
    new_model(path, ["B2", "B3"], encoder="resnet18", seed=1)
    first, header = prepared_model(path, "cpu")
    assert prepared_model(path, "cpu")[0] is first and header.bands == ["B2", "B3"]
    new_model(path, ["B2", "B3", "B4"], encoder="resnet18", seed=2)
    again, header = prepared_model(path, "cpu")
    assert again is not first and header.bands == ["B2", "B3", "B4"]


def test_reading_in_pieces_matches_whole_rows(region, untrained_model, tmp_path, monkeypatch):
    from glacier_mapper_plugin.core.segmentation import segment as segment_module
    probs = {}
    for piece_tiles in (2, 1000):
        monkeypatch.setattr(segment_module, "PIECE_TILES", piece_tiles)
        res = segment(region.imagery_end, untrained_model, tmp_path / f"p{piece_tiles}.tif",
                      dem_path=region.dem, options=SegmentOptions(streams=1, **SMALL))
        probs[piece_tiles] = _read(res.probability)[0]
    np.testing.assert_array_equal(probs[2], probs[1000])


def _cuda_available():
    import torch
    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU (run on a lent GPU machine)")
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_cuda_agrees_with_cpu(region, untrained_model, tmp_path, precision):
    """The CUDA path (pinned batch buffers, one stream, autocast) against the CPU fp32 run."""
    masks = {}
    for device, prec in (("cpu", "fp32"), ("cuda", precision)):
        res = segment(region.imagery_end, untrained_model, tmp_path / f"p{device}.tif",
                      tmp_path / f"m{device}.tif", dem_path=region.dem,
                      options=SegmentOptions(tile_size=256, overlap=32, device=device, precision=prec))
        assert res.device == device
        masks[device] = _read(res.mask)[0]
    assert np.mean(masks["cpu"] == masks["cuda"]) >= 0.999


@pytest.fixture(scope="module")
def barely_trained(region, tmp_path_factory):
    """A model after two epochs: its probabilities hover near the threshold and depend on far
    context, the hardest case for tile-size invariance (a 30-epoch model is far easier)."""
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model
    path = tmp_path_factory.mktemp("e2") / "e2.gmm"
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"), "id")
    train_model([region.imagery_start], inv, path, region.dem,
                TrainOptions(patch_size=128, encoder="resnet18", epochs=2, batch_size=8, learning_rate=0.002, seed=42,
                             # the recipe this test's bounds were set with: what it measures is the
                             # tiling, and a Dice term leaves a 2-epoch network's logits nearer 0
                             loss="bce", schedule="constant"))
    return path


def _mirrored_2x2(src_path, dst):
    """A raster twice as wide and high, the original mirrored into each quadrant: real content
    large enough for several 512 px tiles."""
    with rasterio.open(src_path) as src:
        a, profile, tags, names = src.read(), src.profile, src.tags(), src.descriptions
    big = np.concatenate([np.concatenate([a, a[:, :, ::-1]], axis=2),
                          np.concatenate([a[:, ::-1], a[:, ::-1, ::-1]], axis=2)], axis=1)
    with rasterio.open(dst, "w", **dict(profile, width=big.shape[2], height=big.shape[1])) as out:
        out.write(big)
        out.descriptions = names
        out.update_tags(**tags)
    return dst


def test_tile_size_changes_speed_not_the_map(region, barely_trained, tmp_path):
    """`glacier-mapper segment` on an 800 x 800 scene with 512, 768 and 1024 px tiles (the last
    one the whole scene) at the default overlap: >= 99.5 % of the pixels agree and the mean
    |dp| is <= 0.01 between any two (a barely trained model flipped 1.6 % between 256 and
    1024 px before); smaller tiles are run with a warning that they see less context."""
    import itertools
    import subprocess
    import sys
    exe = Path(sys.executable).parent / "glacier-mapper"
    scene, dem = _mirrored_2x2(region.imagery_end, tmp_path / "scene.tif"), _mirrored_2x2(region.dem, tmp_path / "dem.tif")
    probs = {}
    for tile in (512, 768, 1024, 256):
        out = tmp_path / f"p{tile}.tif"
        run = subprocess.run([str(exe), "segment", "--input", str(scene), "--dem", str(dem),
                              "--model", str(barely_trained), "--tile-size", str(tile), "--precision", "fp32",
                              "--output-probability", str(out)], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        assert ("see less context" in run.stderr) == (tile < 512)
        probs[tile] = _read(out)[0]
    for a, b in itertools.combinations((512, 768, 1024), 2):
        x, y = probs[a], probs[b]
        ok = np.isfinite(x) & np.isfinite(y)
        agree, dp = np.mean((x[ok] >= 0.5) == (y[ok] >= 0.5)), np.mean(np.abs(x[ok] - y[ok]))
        assert agree >= 0.995 and dp <= 0.01, (a, b, agree, dp)


def test_devices_by_what_torch_sees(monkeypatch):
    """auto: CUDA, else an Apple GPU (mps), else the CPU; a device this torch or machine lacks
    is refused naming the torch installed (simulated: what torch reports is patched)."""
    import torch

    from glacier_mapper_plugin.core.segmentation.segment import pick_device, pick_precision
    for cuda, mps, expected in ((True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        assert pick_device("auto") == expected
    with pytest.raises(ValueError, match=r"DEVICE is mps but torch sees no Apple GPU \(torch .*\): mps needs a Mac"):
        pick_device("mps")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ValueError, match=r"CPU-only build\): reinstall the engine with its CUDA torch"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="DEVICE must be auto, cuda, mps, cpu"):
        pick_device("gpu")
    assert pick_precision("auto", "mps") == "fp32"
    with pytest.raises(ValueError, match="not used on Apple GPUs"):
        pick_precision("bf16", "mps")


def test_operators_that_fall_back_to_the_cpu_on_apple_gpus_are_named():
    """torch warns once per operator an Apple GPU lacks (its words, as torch 2.x writes them);
    the log names each once; other warnings go on as warnings."""
    import warnings

    from glacier_mapper_plugin.core.progress import Progress
    from glacier_mapper_plugin.core.segmentation.segment import named_fallbacks
    said = []

    class Log(Progress):
        def warning(self, message):
            said.append(message)
    torch_says = ("The operator '{}' is not currently supported on the MPS backend and will fall back to run on "
                  "the CPU. This may have performance implications.")
    with pytest.warns(RuntimeWarning, match="something else"):
        with named_fallbacks(Log()):
            for op in ("aten::upsample_bilinear2d.out", "aten::_linalg_solve_ex.result", "aten::upsample_bilinear2d.out"):
                warnings.warn(torch_says.format(op), UserWarning)
            warnings.warn("something else", RuntimeWarning)
    assert said == ["DEVICE mps: operators not implemented on Apple GPUs ran on the CPU (slower): "
                    "aten::upsample_bilinear2d.out, aten::_linalg_solve_ex.result"]


def test_dihedral_views_undo_exactly():
    import torch
    from glacier_mapper_plugin.core.segmentation.segment import TTA, _dihedral
    t = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert len(set(TTA["d4"])) == 8 and set(TTA["flips"]) <= set(TTA["d4"])
    for k, flip in TTA["d4"]:
        assert torch.equal(_dihedral(_dihedral(t, k, flip), k, flip, inverse=True), t)


@pytest.mark.parametrize("tta", ["flips", "d4"])
def test_tta_map_turns_with_the_image(untrained_model, tta):
    """With TTA=d4 the map of a rotated (or mirrored) tile is the rotated map: the average
    over the group does not depend on how the scene was turned. flips: the same for a flip."""
    import torch
    from glacier_mapper_plugin.core.segmentation.segment import Network
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 6, 64, 64)).astype(np.float32))
    net = Network(untrained_model, "cpu", "fp32", tta=tta)
    plain = Network(untrained_model, "cpu", "fp32")
    p = net(x)
    turns = [(lambda a: np.flip(a, -1), lambda t: t.flip(-1))]
    if tta == "d4":
        turns.append((lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda t: t.rot90(1, dims=(-2, -1))))
    for on_map, on_image in turns:
        np.testing.assert_allclose(net(on_image(x)), on_map(p), atol=2e-5)
        assert np.abs(plain(on_image(x)) - on_map(plain(x))).max() > 1e-3  # without TTA it does not
    assert p.shape == (2, 1, 64, 64) and np.abs(p - plain(x)).max() > 1e-4  # (N, members, H, W)


def test_unknown_tta_refused(region, untrained_model, tmp_path):
    with pytest.raises(ValueError, match="TTA must be one of none, flips, d4"):
        segment(region.imagery_start, untrained_model, tmp_path / "p.tif",
                options=SegmentOptions(**SMALL, tta="d8"))
    assert not (tmp_path / "p.tif").exists()


def test_calibration_changes_the_probability_not_the_mask(region, untrained_model, tmp_path):
    from glacier_mapper_plugin.core.segmentation.model_file import load_model, save_model
    net, header = load_model(untrained_model)
    header.temperature = 3.0
    hot = save_model(tmp_path / "hot.gmm", net, header)
    one_tile = SegmentOptions(tile_size=512, overlap=0, precision="fp32")  # no blend: p = sigmoid(logit / T) exactly
    a = segment(region.imagery_start, untrained_model, tmp_path / "a.tif", tmp_path / "am.tif", dem_path=region.dem,
                options=one_tile)
    b = segment(region.imagery_start, hot, tmp_path / "b.tif", tmp_path / "bm.tif", dem_path=region.dem,
                options=one_tile)
    pa, pb = _read(a.probability)[0], _read(b.probability)[0]
    ok = np.isfinite(pa) & (pa > 0.02) & (pa < 0.98)  # where float32 keeps the logit recoverable
    logit = np.log(pa[ok] / (1 - pa[ok]))
    assert a.tiles == 1 and ok.mean() > 0.3
    np.testing.assert_allclose(pb[ok], 1 / (1 + np.exp(-logit / 3.0)), atol=1e-4)  # float32 logits
    assert np.array_equal(_read(a.mask)[0], _read(b.mask)[0])


def _mask_raster(path, mask):
    from rasterio.transform import from_origin
    with rasterio.open(path, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                       dtype="uint8", crs="EPSG:32632", transform=from_origin(600000.0, 5200000.0, 10.0, 10.0),
                       nodata=255) as dst:
        dst.write(mask, 1)
    return path


def _bodies_at_once(path):
    """The reference: the whole mask polygonised in one call (8-connected), as before blocks."""
    from rasterio import features
    from shapely.geometry import shape as to_shape
    with rasterio.open(path) as src:
        mask = src.read(1)
        return [to_shape(g) for g, _ in features.shapes(mask, mask=mask == 1, transform=src.transform,
                                                         connectivity=8)]


def _polygonised_in_blocks(path, out, rows, **kw):
    from glacier_mapper_plugin.core.segmentation import segment as module
    saved = module.POLYGON_ROWS
    try:
        module.POLYGON_ROWS = rows
        return read_layer(module.polygonise(path, out, **kw))
    finally:
        module.POLYGON_ROWS = saved


def _same_bodies(layer, reference):
    from shapely import union_all
    assert len(layer.geometries) == len(reference)
    assert np.allclose(sorted(g.area for g in layer.geometries), sorted(g.area for g in reference), rtol=1e-9)
    a, b = union_all(layer.geometries), union_all(reference)
    assert a.symmetric_difference(b).area < 1e-6 * b.area
    assert sorted(r["id"] for r in layer.records) == list(range(1, len(reference) + 1))


def test_polygons_in_blocks_of_rows_are_the_bodies_of_the_whole_mask(tmp_path):
    """Bodies that cross many seams: a glacier with a nunatak (a hole) across a seam, a U
    whose two arms are separate above a seam and one body below it, a chain linked only
    corner to corner across seams (8-connectivity), single pixels, bodies on the raster's edges."""
    mask = np.zeros((40, 30), np.uint8)
    mask[2:20, 2:12] = 1
    mask[8:12, 5:8] = 0            # nunatak
    mask[0:15, 15:17] = 1          # the U's arms
    mask[0:15, 20:22] = 1
    mask[15:18, 15:22] = 1         # its base
    for k in range(8):             # a diagonal staircase: corner contacts only
        mask[22 + k, 3 + k] = 1
    mask[26, 28] = mask[39, 0] = 1
    mask[30:40, 20:30] = 1         # in the lower right corner
    mask[25, 25] = 255             # no data is not glacier
    path = _mask_raster(tmp_path / "mask.tif", mask)
    reference = _bodies_at_once(path)
    assert len(reference) == 6
    for rows in (1, 2, 3, 5, 9, 10, 40, 1024):
        _same_bodies(_polygonised_in_blocks(path, tmp_path / f"g{rows}.gpkg", rows), reference)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 33), cover=st.floats(0.3, 0.7))
def test_polygons_in_blocks_hold_for_any_mask_and_block_height(tmp_path_factory, seed, rows, cover):
    from scipy import ndimage
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((48, 37)), 1.5)
    mask = (noise > np.quantile(noise, 1 - cover)).astype(np.uint8)
    folder = tmp_path_factory.mktemp("blocks")
    path = _mask_raster(folder / "mask.tif", mask)
    _same_bodies(_polygonised_in_blocks(path, folder / "g.gpkg", rows), _bodies_at_once(path))


def test_polygonising_memory_does_not_grow_with_the_raster(tmp_path):
    """A mask 20 times taller with the same glaciers at its top: peak Python-heap memory of
    polygonising stays that of a block, not the mask."""
    import tracemalloc
    mask = np.zeros((3000, 800), np.uint8)
    mask[10:90, 10:300] = 1
    small = _mask_raster(tmp_path / "small.tif", mask[:150])
    tall = _mask_raster(tmp_path / "tall.tif", mask)
    peaks, counts = [], []
    for path in (small, tall):
        tracemalloc.start()
        counts.append(len(_polygonised_in_blocks(path, tmp_path / f"{path.stem}.gpkg", 100).geometries))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert counts == [1, 1]
    assert peaks[1] < mask.nbytes / 5, (peaks, mask.nbytes)
