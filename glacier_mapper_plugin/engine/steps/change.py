"""Area-change steps."""
from __future__ import annotations

from ...core.progress import Progress
from .common import inventory, number, paths, pool_of, require, step, write_joined, write_table


AREA_TYPES = {"area_inventory_km2": float, "area_start_km2": float, "area_end_km2": float,
              "recall": float, "recall_end": float, "masked_start": float, "masked_end": float,
              "year_start": float, "year_end": float, "rate_km2_yr": float, "rate_pct_yr": float,
              "area_start_sigma_km2": float, "area_end_sigma_km2": float,
              "rate_sigma_km2_yr": float, "rate_sigma_pct_yr": float, "snr": float,
              "kept": bool, "filter_reason": str, "chip_start": str, "chip_end": str}


def inventory_years(p, layer, progress):
    """Decimal years of the inventory's dates: DATE_FIELD, or the published date column (RGI 7
    src_date, RGI 6 BgnDate, GLIMS anlys_time) when it is empty; partial dates are read as
    what they are and the log says how many and how."""
    from ...core.inventories import DATE_COLUMNS, find_column, inventory_date
    names = list(layer.records[0]) if layer.records else []
    field = p.get("DATE_FIELD") or None
    if field and field not in names:
        raise ValueError(f"DATE_FIELD: INVENTORY has no field {field!r} (fields: {', '.join(names)})")
    if not field:
        found = find_column(names, DATE_COLUMNS)
        if not found:
            return None
        field = found[0]
        progress.info(f"INVENTORY: dates from its column {field} ({found[1]}); set DATE_FIELD to use another")
    read = [inventory_date(r.get(field)) for r in layer.records]
    notes: dict = {}
    for _, how in read:
        if how != "date":
            notes[how] = notes.get(how, 0) + 1
    for how, n in sorted(notes.items()):
        progress.info(f"DATE_FIELD {field}: {n} of {len(read)} dates: {how}")
    return [year for year, _ in read]


@step("area_change")
def area_change(p, progress: Progress):
    from ...core.change.area_change import AreaChangeOptions, area_change as change
    from ...core.change.report import write_report
    require(p, "START", "END")
    inv, layer = inventory(p, progress=progress)
    years = inventory_years(p, layer, progress)
    options = AreaChangeOptions(
        min_recall=float(p.get("MIN_RECALL", 0.75)), max_masked=float(p.get("MAX_MASKED", 0.2)),
        trim_percent=float(p.get("TRIM_PERCENT", 5.0)), min_snr=float(p.get("MIN_SNR", 0.0)),
        threshold=float(p.get("THRESHOLD", 0.5)),
        outline_uncertainty_px=float(p.get("OUTLINE_UNCERTAINTY_PX", 0.5)),
        start_year=number(p, "START_YEAR"), end_year=number(p, "END_YEAR"))
    start_ens, end_ens = paths(p, "START_ENSEMBLE"), paths(p, "END_ENSEMBLE")
    if bool(start_ens) != bool(end_ens):
        raise ValueError("START_ENSEMBLE and END_ENSEMBLE go together: give both or neither")
    with pool_of(p, progress) as pool:
        result = change(inv, paths(p, "START"), paths(p, "END"), paths(p, "START_QUALITY") or None,
                        paths(p, "END_QUALITY") or None, options, years,
                        [[x] for x in start_ens] or None, [[x] for x in end_ens] or None, progress, pool)
    rows = [dict(r, id=str(r["id"])) for r in result.glaciers]
    types = {k: v for k, v in AREA_TYPES.items() if rows and k in rows[0]}
    out = {"REGIONAL_RATE": result.regional["rate_pct_yr"], "N_KEPT": result.regional["n_kept"]}
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_joined(p["OUTPUT"], layer, [{k: r[k] for k in types} for r in rows], types)
    if p.get("OUTPUT_SUMMARY"):
        out["OUTPUT_SUMMARY"] = write_table(p["OUTPUT_SUMMARY"], [result.regional], name="summary")
    if p.get("OUTPUT_SIZE_CLASSES"):
        out["OUTPUT_SIZE_CLASSES"] = write_table(p["OUTPUT_SIZE_CLASSES"], result.size_classes,
                                                 {"size_class": str, "n": int, "n_kept": int}, "size_classes")
    report = p.get("OUTPUT_REPORT") or None
    if report:
        used = {k: v for k, v in p.items() if not k.startswith("OUTPUT")}
        write_report(report, result, used, provenance=_provenance(p, layer, inv, result))
        out["OUTPUT_REPORT"] = report
    for reason, count in sorted(result.filter_counts.items()):
        progress.info(f"{count:5d} glaciers: {reason}")
    return out


def _provenance(p, layer, inv, result) -> dict:
    """The report's account of what was measured (the user's layer name from QGIS in _NAMES)."""
    from ...core.inventories import NAME_COLUMNS, find_column
    from ...core.change.provenance import model_rows, prediction_rows, software_versions, tagged
    given = p.get("_NAMES") or {}
    id_column = getattr(layer, "id_field", None)
    name = find_column(list(layer.records[0]), NAME_COLUMNS) if layer.records else None
    names = {str(i): str(r.get(name[0]) or "") for i, r in zip(inv.ids, layer.records)} if name else {}
    start, end = tagged(paths(p, "START")), tagged(paths(p, "END"))
    return dict(inventory=given.get("INVENTORY") or p.get("INVENTORY"),
                id_column=f"its column {id_column}" if id_column else
                "feature number (no id column found: set ID_FIELD to name one)",
                glacier_names=names, predictions=prediction_rows(start, "START") + prediction_rows(end, "END"),
                models=model_rows(start + end), software=software_versions())
