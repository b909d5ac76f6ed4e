"""The area-change report: one self-contained HTML file (plots embedded as PNG) that opens
from the Processing results viewer, in a browser, or attached to an e-mail."""
from __future__ import annotations

import html
import math
from pathlib import Path

from ..html_report import fmt as _fmt, page, png as _png, pyplot, table as _table
from ..io import atomic_output


def rate_by_size_class_plot(result) -> str:
    """The paper's Figure 2: distribution of the kept rates per size class."""
    plt = pyplot()
    from .area_change import SIZE_CLASSES
    groups, labels = [], []
    for lo, hi in SIZE_CLASSES:
        rates = [r["rate_pct_yr"] for r in result.glaciers
                 if r["kept"] and lo <= r["area_inventory_km2"] < hi]
        groups.append(rates)
        labels.append(f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">{lo:g}")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.boxplot([g if g else [math.nan] for g in groups], tick_labels=labels, showfliers=True)
    for i, g in enumerate(groups, start=1):
        ax.text(i, ax.get_ylim()[1], f"n={len(g)}", ha="center", va="bottom", fontsize=7)
    ax.axhline(result.regional["rate_pct_yr"], color="tab:red", lw=1, ls="--",
               label=f"regional {result.regional['rate_pct_yr']:.2f} %/yr")
    ax.set_xlabel("inventory area (km²)")
    ax.set_ylabel("area change rate (%/yr)")
    ax.legend(fontsize=8)
    return _png(fig)


def area_scatter_plot(result) -> str:
    """The paper's Figure A3: predicted (start date) versus inventory area."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for kept, colour, label in ((True, "tab:blue", "kept"), (False, "tab:gray", "filtered")):
        pts = [(r["area_inventory_km2"], r["area_start_km2"]) for r in result.glaciers
               if r["kept"] == kept and r["area_start_km2"] and r["area_start_km2"] > 0]
        if pts:
            ax.scatter(*zip(*pts), s=12, c=colour, label=label, alpha=0.8)
    lims = [r["area_inventory_km2"] for r in result.glaciers if r["area_inventory_km2"] > 0]
    if lims:
        lo, hi = min(lims) * 0.8, max(lims) * 1.25
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("inventory area (km²)")
    ax.set_ylabel("predicted area, start date (km²)")
    ax.legend(fontsize=8)
    return _png(fig)


def _uncertainty_source(parameters: dict) -> str:
    """What the ± stands for: the word ensemble only when there was one."""
    buffer = parameters.get("OUTLINE_UNCERTAINTY_PX", 0.5)
    parts = []
    if parameters.get("START_ENSEMBLE"):
        parts.append("ensemble spread")
    if buffer not in (None, 0, 0.0, "0"):
        parts.append(f"outline buffer of ± {buffer} px")
    return " and ".join(parts) or "uncertainty"


def _sources(provenance: dict, result) -> str:
    """What was measured: the inventory and its id column, the predictions with their dates,
    imagery and model, how clouds were masked, the software."""
    lines = [f"<p><b>Inventory:</b> {html.escape(str(provenance.get('inventory', '')))}; glaciers "
             f"identified by {html.escape(str(provenance.get('id_column', '')))}.</p>"]
    masking = "".join(f"<li>{label}: {html.escape(how)}</li>" for label, how in result.quality_sources.items())
    if masking:
        lines.append(f"<p><b>Clouds, shadow and no data masked with</b></p><ul>{masking}</ul>")
    parts = [_table(provenance.get("predictions", []))]
    if provenance.get("models"):
        parts.append("<p><b>Model(s)</b></p>" + _table(provenance["models"]))
    parts.append("<p><b>Software</b></p>" + _table(provenance.get("software", [])))
    return "\n".join(lines + parts)


def write_report(path, result, parameters: dict, title="Glacier area change", provenance=None) -> Path:
    reg = result.regional
    provenance = provenance or {}
    summary = [dict(quantity=k, value=v) for k, v in reg.items()]
    filters = [dict(outcome=k, glaciers=v) for k, v in sorted(result.filter_counts.items())]
    params = [dict(parameter=k, value=v) for k, v in parameters.items() if not k.startswith("_")]
    names = provenance.get("glacier_names") or {}
    glaciers = [dict(r, name=names.get(str(r["id"]), "")) for r in result.glaciers] if names else result.glaciers
    cols = ["id"] + (["name"] if names else []) + ["area_inventory_km2", "area_start_km2", "area_end_km2", "recall", "masked_start",
            "masked_end", "rate_km2_yr", "rate_pct_yr"]
    if result.glaciers and "rate_sigma_pct_yr" in result.glaciers[0]:
        cols.append("rate_sigma_pct_yr")
    cols += ["kept", "filter_reason"]
    body = f"""{"".join(f'<p style="color:#a00"><b>Warning:</b> {html.escape(w)}</p>' for w in getattr(result, "warnings", []))}
<p><b>Regional rate: {_fmt(reg['rate_pct_yr'])} %/yr</b>
{f"(± {_fmt(reg['rate_sigma_pct_yr'])} %/yr: {html.escape(_uncertainty_source(parameters))})" if 'rate_sigma_pct_yr' in reg else ''}
from {reg['n_kept']} of {reg['n_glaciers']} glaciers covering {_fmt(100 * reg['area_share_kept'])} %
of the inventory area. Method: Diaconu &amp; Bamber (2023), predicted area inside the inventory
outlines, recall correction of masked pixels, filters below.</p>
<h2>Rate by size class (Figure 2)</h2><img src="data:image/png;base64,{rate_by_size_class_plot(result)}">
{_table(result.size_classes)}
<h2>Predicted versus inventory area (Figure A3)</h2><img src="data:image/png;base64,{area_scatter_plot(result)}">
<h2>Regional summary</h2>{_table(summary)}
<h2>What was measured</h2>{_sources(provenance, result)}
<h2>Filters</h2>{_table(filters)}
<h2>Parameters</h2>{_table(params)}
<h2>Glaciers</h2>{_table(glaciers, cols)}"""
    doc = page(title, body)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(doc, encoding="utf-8")
    return Path(path)
