from pathlib import Path

import numpy as np
import pytest
import torch

from glacier_mapper_plugin.core.labels import Inventory
from glacier_mapper_plugin.core.segmentation.model_file import load_model, read_header
from glacier_mapper_plugin.core.segmentation.patches import extract_patches
from glacier_mapper_plugin.core.progress import Cancelled, Progress
from glacier_mapper_plugin.core.segmentation.train import (TrainOptions, d4, default_bands,
                                              hidden_from_training, learning_rate, masked_bce,
                                              masked_dice, resume_path, split_glaciers, train_model)
from glacier_mapper_plugin.core.segmentation.patches import Patch
from hypothesis import given, settings, strategies as st
from glacier_mapper_plugin.core.vector import read_layer

FAST = dict(patch_size=64, encoder="resnet18", epochs=2, batch_size=4, device="cpu", seed=3)


def _inventory(region):
    return Inventory.from_layer(read_layer(region.inventory, "inventory"))


def test_cloud_pixel_changes_nothing():
    logits = torch.randn(1, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (1, 8, 8)).float()
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    valid[0, 3, 3] = False
    loss = masked_bce(logits, target, valid)
    loss.backward()
    assert logits.grad[0, 3, 3] == 0
    changed = logits.detach().clone()
    changed[0, 3, 3] += 100
    target2 = target.clone()
    target2[0, 3, 3] = 1 - target2[0, 3, 3]
    assert masked_bce(changed, target2, valid) == pytest.approx(float(loss.detach()))


def test_d4_applies_the_same_transform_to_image_and_label():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    y = (x[:, 0] > 10).astype(np.uint8)
    for k in range(4):
        for flip in (False, True):
            tx, ty = d4([x, y], k, flip)
            assert np.array_equal(tx[:, 0] > 10, ty.astype(bool))


def test_split_is_by_glacier_and_seeded():
    train, val = split_glaciers(range(1, 11), 0.2, seed=1)
    assert len(val) == 2 and not set(train) & set(val) and set(train) | set(val) == set(range(1, 11))
    assert split_glaciers(range(1, 11), 0.2, seed=1) == (train, val)
    assert split_glaciers([4], 0.2, seed=1) == ([4], [])


def test_default_bands_skip_scl_and_add_dem(region):
    assert default_bands(region.imagery_start, region.dem) == ["B2", "B3", "B4", "B8", "B12", "DEM"]
    assert default_bands(region.imagery_start) == ["B2", "B3", "B4", "B8", "B12"]


def test_normalisation_from_training_patches_stored_in_model(small_region, tmp_path):
    inv = _inventory(small_region)
    res = train_model([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem,
                      TrainOptions(**dict(FAST, epochs=1, val_fraction=0.0)))
    ps = extract_patches([small_region.imagery_start], inv, res.header.bands, 64, small_region.dem)
    x, _, valid = ps.arrays(range(len(ps)))
    pixels = np.moveaxis(x, 1, 0)[:, valid]  # (bands, valid pixels): the direct two-pass numbers
    mean, std = pixels.astype(np.float64).mean(axis=1), pixels.astype(np.float64).std(axis=1)
    header = read_header(tmp_path / "m.gmm")
    np.testing.assert_allclose(header.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(header.std, std, rtol=1e-5)
    assert header.bands == ["B2", "B3", "B4", "B8", "B12", "DEM"]
    assert header.training["patches_train"] == len(ps.patches)
    assert 0.5 < header.mean[3] < 0.8 or 0.05 < header.mean[3] < 0.5  # reflectance, not DN
    assert 1500 < header.mean[5] < 4000  # metres


def _weights(path):
    net, _ = load_model(path)
    return net.state_dict()


def test_same_seed_same_model(small_region, tmp_path):
    inv = _inventory(small_region)
    for name in ("a", "b"):
        train_model([small_region.imagery_start], inv, tmp_path / f"{name}.gmm", small_region.dem,
                    TrainOptions(**FAST))
    a, b = _weights(tmp_path / "a.gmm"), _weights(tmp_path / "b.gmm")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_header(tmp_path / "a.gmm").training["history"] == read_header(tmp_path / "b.gmm").training["history"]
    # A validation IoU below the plausible floor travels with the model as a warning.
    from glacier_mapper_plugin.core.segmentation.plausibility import validation_warning
    metrics = read_header(tmp_path / "a.gmm").metrics
    expected = validation_warning(metrics["val_iou_per_glacier"], metrics.get("baseline"))
    assert metrics.get("warnings", []) == ([expected] if expected else [])


class _StopAtEpoch(Progress):
    """Cancels as soon as training moves past `epochs` epochs."""

    def __init__(self, epochs, total):
        super().__init__()
        self.limit = epochs / total

    def update(self, fraction, message=None):
        self.cancelled = fraction > self.limit + 1e-9
        super().update(fraction, message)


def test_stopped_run_resumes_from_its_last_epoch(small_region, tmp_path):
    inv = _inventory(small_region)
    opts = TrainOptions(**dict(FAST, epochs=3))
    out = tmp_path / "m.gmm"
    with pytest.raises(Cancelled):
        train_model([small_region.imagery_start], inv, out, small_region.dem, opts,
                    _StopAtEpoch(1, 3))
    assert not out.exists() and resume_path(out).exists()
    res = train_model([small_region.imagery_start], inv, out, small_region.dem, opts)
    assert res.resumed_from == 1 and out.exists() and not resume_path(out).exists()
    train_model([small_region.imagery_start], inv, tmp_path / "straight.gmm", small_region.dem, opts)
    a, b = _weights(out), _weights(tmp_path / "straight.gmm")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_bad_parameters_are_named(small_region, tmp_path):
    inv = _inventory(small_region)
    with pytest.raises(ValueError, match="PATCH_SIZE"):
        train_model([small_region.imagery_start], inv, tmp_path / "m.gmm", options=TrainOptions(patch_size=50))
    with pytest.raises(ValueError, match="INPUT"):
        train_model([], inv, tmp_path / "m.gmm")


def test_loader_workers_change_nothing_and_the_patch_cache_goes_unless_kept(small_region, tmp_path):
    inv = _inventory(small_region)
    cache = tmp_path / "patches"
    for name, workers, keep in (("w0", 0, False), ("w2", 2, True)):
        train_model([small_region.imagery_start], inv, tmp_path / f"{name}.gmm", small_region.dem,
                    TrainOptions(**dict(FAST, epochs=1), workers=workers, patch_cache=str(cache),
                                 keep_patches=keep))
        assert len(list(cache.iterdir())) == (1 if keep else 0)
    a, b = _weights(tmp_path / "w0.gmm"), _weights(tmp_path / "w2.gmm")
    assert all(torch.equal(a[k], b[k]) for k in a)
    training = read_header(tmp_path / "w2.gmm").training
    assert training["loader_workers"] == 2 and 0 < training["step_share"] <= 1


def _hub_cache(root, encoder, state):
    """A Hugging Face hub cache holding smp's ImageNet weights of `encoder` as smp asks for
    them (repo, pinned revision): what a first online run leaves, seeded for offline tests."""
    import json
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import encoders
    settings = encoders[encoder]["pretrained_settings"]["imagenet"]
    snap = root / f"models--{settings['repo_id'].replace('/', '--')}" / "snapshots" / settings["revision"]
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    (snap / "config.json").write_text(json.dumps({"encoder": encoder}))


def test_imagenet_weights_come_from_the_hub_cache(small_region, tmp_path, monkeypatch):
    from segmentation_models_pytorch.encoders import get_encoder
    from glacier_mapper_plugin.core.segmentation.model_file import ModelHeader
    from glacier_mapper_plugin.core.segmentation.train import initial_weights
    from glacier_mapper_plugin.core.segmentation.model_file import build_network
    torch.manual_seed(123)
    reference = get_encoder("resnet18", in_channels=3, weights=None).state_dict()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    header = ModelHeader(bands=["B2", "B3", "B4", "B8", "B12", "DEM"], mean=[0.0] * 6, std=[1.0] * 6,
                         encoder="resnet18")
    with pytest.raises(ValueError, match="ENCODER_WEIGHTS=imagenet.*hub"):
        initial_weights(build_network(header), header, "imagenet", Progress())
    _hub_cache(tmp_path / "hub", "resnet18", reference)
    net = initial_weights(build_network(header), header, "imagenet", Progress())
    got = net.encoder.state_dict()
    assert torch.equal(got["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    # Six bands from three: smp repeats the RGB filters and rescales them (3/6).
    assert torch.allclose(got["conv1.weight"][:, :3], reference["conv1.weight"] * 0.5)


def test_fine_tuning_starts_from_the_given_model(small_region, tmp_path):
    inv = _inventory(small_region)
    base = tmp_path / "base.gmm"
    train_model([small_region.imagery_start], inv, base, small_region.dem,
                TrainOptions(**dict(FAST, epochs=1, val_fraction=0.0)))
    tuned = train_model([small_region.imagery_start], inv, tmp_path / "tuned.gmm", small_region.dem,
                        TrainOptions(**dict(FAST, epochs=1, val_fraction=0.0, learning_rate=1e-7),
                                     encoder_weights=str(base)))
    a, b = _weights(base), _weights(tmp_path / "tuned.gmm")
    key = "encoder.layer4.1.conv2.weight"
    assert torch.allclose(a[key], b[key], atol=1e-4)  # a tiny step away from the base model
    assert tuned.header.mean == read_header(base).mean
    with pytest.raises(ValueError, match="ENCODER_WEIGHTS.*resnet18.*ENCODER"):
        train_model([small_region.imagery_start], inv, tmp_path / "x.gmm", small_region.dem,
                    TrainOptions(**dict(FAST, encoder="resnet34"), encoder_weights=str(base)))
    with pytest.raises(ValueError, match="ENCODER_WEIGHTS.*neither"):
        train_model([small_region.imagery_start], inv, tmp_path / "x.gmm", small_region.dem,
                    TrainOptions(**FAST, encoder_weights="imagenet21k"))


def test_an_ensemble_differs_by_seed_only(small_region, tmp_path):
    """MEMBERS 2: OUTPUT_MODEL is member 1 (the same model as a single training with SEED),
    the second is named by its seed; patches are cut once and removed afterwards."""
    from safetensors.numpy import load_file

    from glacier_mapper_plugin.core.segmentation.train import train_ensemble
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    opts = TrainOptions(**dict(FAST, epochs=1), patch_cache=str(tmp_path / "cache"))
    single = train_model([small_region.imagery_start], inv, tmp_path / "single.gmm", small_region.dem, opts)
    members = train_ensemble([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem, opts, 2)
    assert [Path(m["model"]).name for m in members] == ["m.gmm", f"m_seed{opts.seed + 1}.gmm"]
    assert [m["seed"] for m in members] == [opts.seed, opts.seed + 1]
    a, b, s = (load_file(tmp_path / n) for n in ("m.gmm", f"m_seed{opts.seed + 1}.gmm", "single.gmm"))
    assert all(np.array_equal(a[k], s[k]) for k in a)
    assert not all(np.array_equal(a[k], b[k]) for k in a)
    assert read_header(tmp_path / "m.gmm").training["seed"] == opts.seed and single.best_epoch == members[0]["best_epoch"]
    assert not any((tmp_path / "cache").iterdir())
    # A rerun (after a lost scheduler, a stop) keeps the members trained with these settings
    # and trains those that are missing or were trained otherwise.
    (tmp_path / f"m_seed{opts.seed + 1}.gmm").unlink()
    before = (tmp_path / "m.gmm").stat().st_mtime_ns

    class Log(Progress):
        messages = []

        def info(self, message):
            self.messages.append(message)

    again = train_ensemble([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem, opts, 2, Log())
    assert (tmp_path / "m.gmm").stat().st_mtime_ns == before and any("m.gmm: trained before" in m for m in Log.messages)
    assert np.array_equal(load_file(tmp_path / f"m_seed{opts.seed + 1}.gmm")[next(iter(b))], b[next(iter(b))])
    assert again[1]["best_epoch"] == members[1]["best_epoch"]
    with pytest.raises(ValueError, match="MEMBERS"):
        train_ensemble([small_region.imagery_start], inv, tmp_path / "x.gmm", small_region.dem, opts, 0)


def test_resume_key_changes_when_a_raster_is_replaced_at_its_path(tmp_path):
    """A stopped training never resumes onto another file that took its input's path."""
    import os

    from glacier_mapper_plugin.core.segmentation.train import TrainOptions, _config_hash
    from shapely.geometry import box
    raster = tmp_path / "chip.tif"
    raster.write_bytes(b"first")
    inv = Inventory(["G1"], [box(0, 0, 1, 1)], "EPSG:32632")
    before = _config_hash([raster], inv, ["B2"], TrainOptions())
    assert _config_hash([raster], inv, ["B2"], TrainOptions()) == before
    raster.write_bytes(b"second, longer")
    os.utime(raster, ns=(10 ** 18, 10 ** 18))
    assert _config_hash([raster], inv, ["B2"], TrainOptions()) != before
    moved = Inventory(["G1"], [box(0, 0, 2, 1)], "EPSG:32632")  # the same id, another outline
    assert _config_hash([raster], moved, ["B2"], TrainOptions()) != _config_hash([raster], inv, ["B2"], TrainOptions())


def test_training_without_pread_as_on_windows_gives_the_same_model(small_region, tmp_path, monkeypatch):
    """Windows' Python has no os.pread: with it removed the patch cache is read by seek and
    read under a lock, in the main process and in two DataLoader workers, and the model is
    bitwise the one trained with pread."""
    import os
    inv = _inventory(small_region)
    options = dict(FAST, epochs=1)
    train_model([small_region.imagery_start], inv, tmp_path / "pread.gmm", small_region.dem, TrainOptions(**options))
    monkeypatch.delattr(os, "pread")
    for name, workers in (("seek", 0), ("seek_workers", 2)):
        train_model([small_region.imagery_start], inv, tmp_path / f"{name}.gmm", small_region.dem,
                    TrainOptions(**options, workers=workers))
        a, b = _weights(tmp_path / "pread.gmm"), _weights(tmp_path / f"{name}.gmm")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_an_unreadable_resume_file_is_told_as_unreadable(small_region, tmp_path):
    """A resume file cut short (a run killed while writing it): said to be unreadable, not to
    'belong to other settings', and training starts afresh."""
    from glacier_mapper_plugin.core.segmentation.train import resume_path
    said = []

    class Log(Progress):
        def warning(self, message):
            said.append(message)

    resume = resume_path(tmp_path / "m.gmm")
    resume.parent.mkdir(parents=True, exist_ok=True)
    resume.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"__met")
    train_model([small_region.imagery_start], _inventory(small_region), tmp_path / "m.gmm", small_region.dem,
                TrainOptions(**dict(FAST, epochs=1)), progress=Log())
    assert any(m.startswith(f"{resume.name} cannot be read") and m.endswith("starting afresh") for m in said), said
    assert (tmp_path / "m.gmm").exists() and not resume.exists()


def test_dice_ignores_cloud_pixels_and_is_zero_when_perfect():
    target = torch.zeros(1, 8, 8)
    target[0, :4] = 1
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    perfect = (target * 2 - 1) * 50
    assert float(masked_dice(perfect, target, valid)) < 1e-3
    valid[0, 0, 0] = False
    wrong = perfect.clone()
    wrong[0, 0, 0] = -50  # a cloud pixel called rock: no cost
    assert float(masked_dice(wrong, target, valid)) == pytest.approx(float(masked_dice(perfect, target, valid)))


def test_cosine_schedule_decays_and_constant_stays():
    lrs = [learning_rate(1e-3, "cosine", s, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(1e-3, "constant", 70, 100) == 1e-3
    with pytest.raises(ValueError, match="SCHEDULE"):
        learning_rate(1e-3, "step", 1, 10)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=2, max_size=40, unique=True),
       st.floats(0.05, 0.6), st.integers(0, 99))
def test_spatial_validation_is_one_block(points, fraction, seed):
    """Every validation glacier is nearer to the block's first glacier than every training glacier."""
    centres = {g + 1: p for g, p in enumerate(points)}
    train, val = split_glaciers(centres, fraction, seed, centres)
    assert val and train and sorted(train + val) == sorted(centres)
    assert split_glaciers(centres, fraction, seed, centres) == (train, val)
    d = lambda a, b: np.hypot(centres[a][0] - centres[b][0], centres[a][1] - centres[b][1])  # noqa: E731
    first = min(val, key=lambda g: max(d(g, h) for h in val))  # some glacier of the block
    assert any(max(d(f, v) for v in val) <= min(d(f, t) for t in train) + 1e-9 for f in val), first


def test_validation_pixels_are_hidden_from_the_training_loss():
    """A training patch's rectangles are exactly its pixels inside validation windows."""
    size = 8
    patches = [Patch(0, 0, 0, 1), Patch(0, 4, 6, 2), Patch(0, 20, 20, 2), Patch(1, 0, 0, 2), Patch(0, -3, 5, 2)]
    hidden = hidden_from_training(patches, [0], [1, 2, 3, 4], size)
    got = np.zeros((size, size), bool)
    for r0, r1, c0, c1 in hidden[0]:
        got[r0:r1, c0:c1] = True
    want = np.zeros((size, size), bool)
    for p in (patches[1], patches[4]):  # patch 2 is far, patch 3 on another raster
        want[max(p.row, 0):p.row + size, max(p.col, 0):p.col + size] = True
    assert np.array_equal(got, want)
    assert hidden_from_training(patches, [0], [], size) == {}


def test_training_stops_after_patience_and_keeps_the_best(small_region, tmp_path):
    inv = _inventory(small_region)
    res = train_model([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem,
                      TrainOptions(**dict(FAST, epochs=12, patience=1, learning_rate=0.05)))
    ran = res.header.training["epochs_run"]
    assert ran == len(res.history) and res.best_epoch == ran - 1 < 11
    assert res.header.metrics["best_epoch"] == res.best_epoch
    cal = res.header.metrics["calibration"]
    assert res.header.temperature == cal["temperature"] and 0 <= cal["ece"] <= cal["ece_before"] + 0.01
    assert res.header.metrics["baseline"]["index"] == "NDSI (B3, B12)"  # the region has no B11
