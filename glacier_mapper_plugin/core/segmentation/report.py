"""What a training run did, read back from the model files it wrote: the training curve as
a table (one row per member and epoch) and an HTML report with the curve, the reliability
diagram before and after calibration and the comparison with the threshold baseline.
Built from the headers, not from the run, so an ensemble trained on a Dask cluster and a
model trained last year report alike."""
from __future__ import annotations

import html
from pathlib import Path

from ..html_report import fmt, page, png, pyplot, table
from ..io import atomic_output
from .train import learning_rate

CURVE_TYPES = {"model": str, "seed": int, "epoch": int, "loss": float, "val_iou": float,
               "learning_rate": float, "best": bool}


def curve_rows(models) -> list[dict]:
    """models: [(path, ModelHeader)] -> the training curve, one row per member and epoch;
    the learning rate is the one at the end of the epoch (the schedule is a function of the
    step: core.segmentation.train.learning_rate)."""
    rows = []
    for path, header in models:
        t = header.training or {}
        epochs, best = int(t.get("epochs") or 0), int((header.metrics or {}).get("best_epoch") or 0)
        for entry in t.get("history", []):
            e = int(entry["epoch"])
            rows.append({"model": Path(path).name, "seed": int(t.get("seed", 0)), "epoch": e,
                         "loss": float(entry["loss"]), "val_iou": _number(entry.get("val_iou")),
                         "learning_rate": learning_rate(float(t.get("learning_rate", 0.0)),
                                                        t.get("schedule", "constant"), e, max(epochs, 1)),
                         "best": e == best})
    return rows


def _number(v):
    return float(v) if v is not None else float("nan")


def summary_rows(models) -> list[dict]:
    rows = []
    for path, header in models:
        t, m = header.training or {}, header.metrics or {}
        cal, base, val = m.get("calibration") or {}, m.get("baseline") or {}, m.get("validation") or {}
        rows.append({
            "model": Path(path).name, "seed": t.get("seed"), "epochs run": f"{t.get('epochs_run', '')} of {t.get('epochs', '')}",
            "best epoch": m.get("best_epoch"), "validation IoU per glacier": m.get("val_iou_per_glacier"),
            "precision": val.get("precision"), "recall": val.get("recall"),
            "baseline": f"{base['index']} >= {base['threshold']:.2f}" if base else "",
            "baseline IoU": base.get("val_iou"), "temperature": cal.get("temperature"),
            "ECE before": cal.get("ece_before"), "ECE": cal.get("ece"), "lean": cal.get("lean"),
            "loss": t.get("loss"), "weighting": ", ".join((t.get("weighting") or {}).get("weighting", [])),
            "features": ", ".join(header.features or []), "patches/s": t.get("patches_per_s"),
            "seconds": t.get("seconds")})
    return rows


def curve_plot(models) -> str:
    """Loss (left) and validation IoU (right) per epoch; the kept epoch marked, the baseline's
    IoU dashed: a curve that never clears it is the warning a user must see."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    right = ax.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (path, header) in enumerate(models):
        c = colours[k % len(colours)]
        history = (header.training or {}).get("history", [])
        epochs = [h["epoch"] for h in history]
        label = f"seed {(header.training or {}).get('seed')}"
        ax.plot(epochs, [h["loss"] for h in history], color=c, ls=":", lw=1)
        right.plot(epochs, [_number(h.get("val_iou")) for h in history], color=c, lw=1.5, label=label)
        best = (header.metrics or {}).get("best_epoch")
        if best:
            right.plot([best], [_number(header.metrics.get("val_iou_per_glacier"))], "o", color=c)
        base = (header.metrics or {}).get("baseline")
        if base:
            right.axhline(base["val_iou"], color=c, ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (dotted)")
    right.set_ylabel("validation IoU per glacier (solid; dashed: threshold baseline)")
    right.set_ylim(0, 1)
    right.legend(fontsize=8, loc="lower right")
    return png(fig)


def reliability_plot(models) -> str:
    """Observed glacier share against the predicted probability on the validation pixels,
    before (dotted) and after (solid) temperature scaling; the diagonal is perfect."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 4.4))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (path, header) in enumerate(models):
        cal = (header.metrics or {}).get("calibration") or {}
        c = colours[k % len(colours)]
        for key, ls, what in (("reliability_before", ":", "before"), ("reliability", "-", "after")):
            points = [(r["mean_probability"], r["glacier_share"]) for r in cal.get(key, []) if r["pixels"]]
            if points:
                ax.plot(*zip(*points), ls=ls, marker=".", color=c,
                        label=f"seed {(header.training or {}).get('seed')}, {what}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted glacier probability")
    ax.set_ylabel("observed glacier share")
    ax.legend(fontsize=7)
    return png(fig)


def write_training_report(path, models, title="Glacier model training") -> Path:
    warnings = sorted({w for _, h in models for w in (h.metrics or {}).get("warnings", [])})
    first = models[0][1]
    t = first.training or {}
    body = (
        "".join(f'<p style="color:#a00"><b>Warning:</b> {html.escape(w)}</p>' for w in warnings)
        + f"<p>{len(models)} model(s), U-Net / {html.escape(first.encoder)}, bands "
          f"{html.escape(', '.join(first.bands))}, patches of {first.patch_size} px at {fmt(first.pixel_size_m)} m; "
          f"{t.get('patches_train')} training patches on {t.get('glaciers_train')} glaciers, {t.get('patches_val')} "
          f"validation patches on {t.get('glaciers_val')} glaciers (one spatial block, left out of the training "
          "loss). The epoch with the best validation IoU per glacier is kept; its probabilities are calibrated "
          "on the validation glaciers by one temperature (the 0.5 boundary does not move).</p>"
        + "<h2>Models</h2>" + table(summary_rows(models))
        + f'<h2>Training curve</h2><img src="data:image/png;base64,{curve_plot(models)}">'
        + f'<h2>Reliability on the validation glaciers</h2><img src="data:image/png;base64,{reliability_plot(models)}">'
        + "<p>ECE: the pixel-weighted mean gap between predicted probability and observed glacier share "
          "(15 bins); lean: mean probability minus glacier share, which a temperature cannot remove.</p>"
        + "<h2>Curve</h2>" + table(curve_rows(models)))
    with atomic_output(path) as tmp:
        Path(tmp).write_text(page(title, body), encoding="utf-8")
    return Path(path)
