"""Mass-balance steps: training and applying the Mass Balance Machine."""
from __future__ import annotations

from pathlib import Path

from ...core.progress import Progress
from .common import inventory, join_columns, paths, pool_of, read_source, require, step, write_table


def climate_variables(text):
    out = {}
    for part in (text or "").split(","):
        if part.strip():
            if "=" not in part:
                raise ValueError(f"CLIMATE_VARIABLES: {part!r} is not name=variable")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@step("train_mass_balance")
def train_mass_balance(p, progress: Progress):
    from ...core.massbalance.model import MBMOptions
    from ...core.massbalance.workflow import train_mbm
    from ...core.massbalance.stakes import observations_from_rows, observations_from_stake_table
    require(p, "OBSERVATIONS", "CLIMATE", "OUTPUT_MODEL")
    table = read_source(p, "OBSERVATIONS")
    rows = table.records
    names = list(rows[0]) if rows else []
    units = str(p.get("UNITS") or "m")
    hemi_choice = str(p.get("HEMISPHERE") or "auto")
    from ...core.massbalance.wgms import is_record_table, records_from_table
    obs, dropped, glacier_sites = [], 0, None
    point_rows = [r for r in rows if r.get("POINT_BALANCE") not in (None, "")] if "POINT_BALANCE" in names else []
    if "POINT_BALANCE" not in names and "ba_stratigraphic" in names:
        obs, dropped = observations_from_stake_table(rows, units)
    elif point_rows:
        obs, dropped = observations_from_rows(point_rows, units, p.get("GLACIER_FIELD") or None)
        progress.info(f"{len(obs)} stake observations")
    record_rows = [r for r in rows if r.get("POINT_BALANCE") in (None, "")] if is_record_table(names) else []
    if record_rows:
        obs_records, dropped_records, glacier_sites = _glacier_records(p, record_rows, units, hemi_choice, progress)
        obs += obs_records
        dropped += dropped_records
    progress.info(f"{len(obs)} observations, {dropped} rows dropped")
    options = MBMOptions(lapse_rate=float(p.get("LAPSE_RATE", -0.0065)),
                         precipitation_factor=float(p.get("PRECIPITATION_FACTOR", 1.0)),
                         n_estimators=int(p.get("N_ESTIMATORS", 300)), max_depth=int(p.get("MAX_DEPTH", 4)),
                         learning_rate=float(p.get("LEARNING_RATE", 0.05)), seed=int(p.get("SEED", 42)),
                         hemisphere=str(p.get("HEMISPHERE") or "auto"))
    result = train_mbm(obs, paths(p, "CLIMATE"), p.get("DEM") or None, p["OUTPUT_MODEL"], options,
                       int(p.get("FOLDS", 5)), climate_variables(p.get("CLIMATE_VARIABLES")),
                       p.get("CLIMATE_ELEVATION") or None, progress, dropped, glacier_sites)
    out = {"OUTPUT_MODEL": p["OUTPUT_MODEL"]}
    if p.get("OUTPUT_METRICS"):
        metrics = [dict(target=k, **v) for k, v in result.metrics.items()]
        out["OUTPUT_METRICS"] = write_table(p["OUTPUT_METRICS"], metrics,
                                            {"target": str, "n": int, "rmse": float, "bias": float, "r2": float},
                                            "metrics")
    return out


GLACIER_COLUMNS = ("RGI_ID", "RGIId", "RGI60_ID", "WGMS_ID", "GLACIER_ID", "NAME")


def _glacier_records(p, rows, units, hemi_choice, progress):
    """Glacier-wide and band records placed on the INVENTORY glaciers' DEM cells:
    (observations, rows dropped, {glacier: [Site]})."""
    from ...core.geodesy import to_lonlat
    from ...core.massbalance.seasons import hemisphere
    from ...core.massbalance.topography import Topography
    from ...core.massbalance.wgms import records_from_table
    if not p.get("INVENTORY"):
        raise ValueError("OBSERVATIONS holds glacier-wide or elevation-band records: give INVENTORY "
                         "(and ID_FIELD) so that they can be placed on the glaciers' DEM cells")
    if not p.get("DEM"):
        raise ValueError("DEM is needed to place glacier-wide and band records on the glaciers' cells")
    inv, _ = inventory(p, progress=progress)
    ids = {str(i): (g, inv.crs) for i, g in zip(inv.ids, inv.geometries) if g is not None and not g.is_empty}
    names = list(rows[0])
    chosen = p.get("GLACIER_FIELD") or None
    if chosen and chosen not in names:
        raise ValueError(f"GLACIER_FIELD: OBSERVATIONS has no column {chosen!r}")
    candidates = [chosen] if chosen else [c for c in GLACIER_COLUMNS if c in names]
    matches = {c: sum(str(r.get(c)) in ids for r in rows) for c in candidates}
    column = max(matches, key=matches.get) if matches else None
    if column is None or matches[column] == 0:
        raise ValueError(f"OBSERVATIONS: no column ({', '.join(candidates) or 'none of ' + ', '.join(GLACIER_COLUMNS)}) "
                         f"holds ids of INVENTORY's {p.get('ID_FIELD') or 'feature ids'} (e.g. "
                         f"{', '.join(list(ids)[:3])}): set GLACIER_FIELD and ID_FIELD to matching columns")
    progress.info(f"OBSERVATIONS column {column} matched to INVENTORY {p.get('ID_FIELD') or 'feature id'}: "
                  f"{len({str(r.get(column)) for r in rows} & set(ids))} glacier(s)")
    places = {}

    def place_of(g):
        if g not in places:
            c = to_lonlat(ids[g][0].centroid, ids[g][1])
            places[g] = (c.x, c.y, hemisphere(c.y, hemi_choice))
        return places[g]

    obs, problems = records_from_table(rows, units, lambda r: str(r.get(column)) if str(r.get(column)) in ids else None,
                                       place_of)
    for reason, numbers in problems.items():
        progress.warning(f"{len(numbers)} record row(s) left out: {reason} (rows {', '.join(map(str, numbers[:20]))}"
                         + (" ..." if len(numbers) > 20 else "") + ")")
    topo = Topography(p["DEM"])
    sites = {}
    for g in sorted({o.glacier for o in obs}):
        sites[g] = topo.cells(ids[g][0], ids[g][1])[0]  # all: each record samples its own area
        if not sites[g]:
            progress.warning(f"{g}: no DEM cell inside the outline; its records are left out")
    return obs, sum(len(v) for v in problems.values()), sites


@step("predict_mass_balance")
def predict_mass_balance(p, progress: Progress):
    from ...core.massbalance.workflow import plot_series, predict_mbm
    require(p, "MODEL", "CLIMATE", "DEM", "OUTPUT_FOLDER")
    inv, layer = inventory(p, progress=progress)
    folder = p["OUTPUT_FOLDER"]
    with pool_of(p, progress) as pool:
        series = predict_mbm(p["MODEL"], list(zip(inv.ids, inv.geometries, [inv.crs] * len(inv.ids))),
                             paths(p, "CLIMATE"), p["DEM"], int(p.get("START_YEAR", 2000)),
                             int(p.get("END_YEAR", 2020)), folder, climate_variables(p.get("CLIMATE_VARIABLES")),
                             p.get("CLIMATE_ELEVATION") or None, progress, str(p.get("HEMISPHERE") or "auto"), pool)
    joins = {str(g): j for g, j in zip(inv.ids, join_columns(layer, layer.id_field, inv.ids))}
    rows = [dict(r, **joins.get(str(r["glacier_id"]), {})) for s in series for r in s.rows]
    if not rows:
        raise ValueError("no glacier of INVENTORY has DEM cells inside its outline")
    png = plot_series(series, f"{folder}/mass_balance.png")
    out = {"OUTPUT_FOLDER": folder, "PLOT": str(Path(png).with_suffix(".html")),
           "RASTERS": [str(s.raster) for s in series if s.raster]}
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_table(p["OUTPUT"], rows, {"glacier_id": str, "year": int, "ba": float,
                                                        "bw": float, "bs": float}, "balances")
    return out
