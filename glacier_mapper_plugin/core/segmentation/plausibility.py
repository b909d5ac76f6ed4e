"""When a map or a score cannot be right, say so: a 1-epoch model that calls a whole scene
glacier, a validation IoU no better than a brightness threshold, or an out-of-fold map that
contradicts its own fold scores must not pass as a result."""
from __future__ import annotations

import numpy as np

# A scene (or the buffered surroundings of an inventory) is never nine tenths ice: beyond
# that share, without outlines to compare with, the map is suspect.
MAX_SHARE_ALONE = 0.9
# With the inventory's outlines over the same valid pixels: more than twice their share and
# 20 points above it, or less than a quarter of a share above 5 %, is not glacier change.
SHARE_FACTOR, SHARE_MARGIN = 2.0, 0.2
MIN_SHARE_RATIO, MIN_REFERENCE_SHARE = 0.25, 0.05
# A brightness threshold reaches IoU ~0.6 on debris-rich scenes (issue 26's baselines); a
# model below 0.5 on its validation glaciers has not learnt glaciers.
MIN_VALIDATION_IOU = 0.5
# Out-of-fold map and fold scores measure the same models: an IoU gap this large means the
# map or its composition is wrong, not the models.
MAX_OUT_OF_FOLD_GAP = 0.15
PREVIEW_SIDE = 1024  # pixels of the decimated read the map's shares are taken from


def share_warning(predicted: float, reference: float | None = None, what: str = "the map") -> str | None:
    """A message when `predicted` (glacier share of the valid pixels) is implausible, alone or
    against the `reference` share of the inventory's outlines on the same pixels."""
    if not np.isfinite(predicted):
        return None
    if reference is None:
        if predicted > MAX_SHARE_ALONE:
            return (f"{what} calls {predicted:.0%} of its valid pixels glacier: implausible unless the raster "
                    f"lies inside a glacier; check the model (its validation IoU, the bands) before using it")
        return None
    if predicted > max(SHARE_FACTOR * reference, reference + SHARE_MARGIN):
        return (f"{what} calls {predicted:.0%} of its valid pixels glacier where the outlines cover "
                f"{reference:.0%}: implausible; check the model (its validation IoU, the bands, the date)")
    if reference > MIN_REFERENCE_SHARE and predicted < MIN_SHARE_RATIO * reference:
        return (f"{what} calls {predicted:.0%} of its valid pixels glacier where the outlines cover "
                f"{reference:.0%}: it misses most of the ice; check the model, the bands and the scene (snow, clouds)")
    return None


def validation_warning(iou, baseline: dict | None = None) -> str | None:
    """A message when the kept epoch's validation IoU does not beat the threshold baseline
    measured on the same validation glaciers (core.segmentation.baseline), or, without one,
    stays below MIN_VALIDATION_IOU."""
    if iou is None or not np.isfinite(iou):
        return None
    bar = baseline.get("val_iou") if baseline else None
    if bar is not None and np.isfinite(bar):
        if iou > bar:
            return None
        return (f"validation IoU per glacier {iou:.2f} does not beat a {baseline['index']} threshold "
                f"({baseline['threshold']:.2f}, chosen on the training patches) on the same validation glaciers "
                f"({bar:.2f}): the model has not learnt more than that threshold; train longer, on more glaciers, "
                f"or check the inventory against the imagery before using its maps")
    if iou >= MIN_VALIDATION_IOU:
        return None
    return (f"validation IoU per glacier {iou:.2f} is below {MIN_VALIDATION_IOU}: the model has not learnt "
            f"glaciers (a brightness threshold does better); train longer, on more glaciers, or check the "
            f"inventory against the imagery before using its maps")


def out_of_fold_warning(fold_iou: float, overall: dict) -> str | None:
    """`overall`: the out-of-fold map's scores against the inventory (tp, fp, fn, tn, iou)."""
    total = sum(overall.get(k, 0) for k in ("tp", "fp", "fn", "tn"))
    if not total or not np.isfinite(fold_iou):
        return None
    predicted = (overall["tp"] + overall["fp"]) / total
    true = (overall["tp"] + overall["fn"]) / total
    if fold_iou - overall["iou"] > MAX_OUT_OF_FOLD_GAP or share_warning(predicted, true):
        return (f"the out-of-fold map disagrees with the fold scores: IoU {overall['iou']:.2f} over the "
                f"whole rasters against {fold_iou:.2f} on the test patches, glacier on {predicted:.0%} of "
                f"valid pixels against {true:.0%} in the inventory. The folds measure patches around glaciers; "
                f"the map also covers terrain they never saw: trust the map's IoU")
    return None


def map_check(path, threshold: float, geometries=None) -> dict:
    """Glacier share of the valid pixels (`predicted`) and, with outlines in the raster's CRS,
    their share (`reference`) and the confusion counts with IoU, from a decimated read: a
    bounded cost whatever the raster's size."""
    import rasterio
    from rasterio import features
    from .evaluate import read_prediction
    from .metrics import confusion, scores
    with rasterio.open(path) as src:
        scale = max(1, int(np.ceil(max(src.width, src.height) / PREVIEW_SIDE)))
        shape = (max(1, src.height // scale), max(1, src.width // scale))
        transform = src.transform * src.transform.scale(src.width / shape[1], src.height / shape[0])
        try:
            glacier, nodata = read_prediction(src, threshold, out_shape=shape)
        except ValueError:  # all no data: nothing to judge
            return {"predicted": float("nan"), "reference": None}
    valid = ~nodata
    if not valid.any():
        return {"predicted": float("nan"), "reference": None}
    out = {"predicted": float(glacier[valid].mean()), "reference": None}
    shapes = [(g, 1) for g in geometries or [] if g is not None and not g.is_empty]
    if shapes:
        ice = features.rasterize(shapes, out_shape=shape, transform=transform, dtype="uint8") > 0
        counts = confusion(glacier, ice, valid)
        out.update(counts, reference=float(ice[valid].mean()), iou=scores(counts)["iou"])
    return out
