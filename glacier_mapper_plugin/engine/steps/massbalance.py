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
    require(p, "CLIMATE", "OUTPUT_MODEL")
    if not p.get("OBSERVATIONS") and not p.get("WGMS"):
        raise ValueError("OBSERVATIONS or WGMS is required: a table of records, or the WGMS FoG release")
    rows = read_source(p, "OBSERVATIONS").records if p.get("OBSERVATIONS") else []
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
    if p.get("WGMS"):
        obs_fog, dropped_fog, sites_fog = _fog_records(p, hemi_choice, progress)
        obs += obs_fog
        dropped += dropped_fog
        glacier_sites = {**(glacier_sites or {}), **sites_fog} or None
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
    from ...core.massbalance.wgms import records_from_table
    if not p.get("INVENTORY"):
        raise ValueError("OBSERVATIONS holds glacier-wide or elevation-band records: give INVENTORY "
                         "(and ID_FIELD) so that they can be placed on the glaciers' DEM cells")
    ids, place_of = _outlines(p, hemi_choice, progress)
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
    obs, problems = records_from_table(rows, units, lambda r: str(r.get(column)) if str(r.get(column)) in ids else None,
                                       place_of)
    for reason, numbers in problems.items():
        progress.warning(f"{len(numbers)} record row(s) left out: {reason} (rows {', '.join(map(str, numbers[:20]))}"
                         + (" ..." if len(numbers) > 20 else "") + ")")
    return obs, sum(len(v) for v in problems.values()), _sites(p, ids, obs, progress)


def _outlines(p, hemi_choice, progress):
    """INVENTORY's outlines by id ({id: (outline, crs)}) and place_of(id) -> (lon, lat,
    hemisphere) of its centroid; glacier-wide and band records need a DEM to be placed."""
    from ...core.geodesy import to_lonlat
    from ...core.massbalance.seasons import hemisphere
    if not p.get("DEM"):
        raise ValueError("DEM is needed to place glacier-wide and band records on the glaciers' cells")
    inv, _ = inventory(p, progress=progress)
    ids = {str(i): (g, inv.crs) for i, g in zip(inv.ids, inv.geometries) if g is not None and not g.is_empty}
    places = {}

    def place_of(g):
        if g not in places:
            c = to_lonlat(ids[g][0].centroid, ids[g][1])
            places[g] = (c.x, c.y, hemisphere(c.y, hemi_choice))
        return places[g]
    return ids, place_of


def _sites(p, ids, obs, progress):
    """{glacier: its DEM cells} for the glaciers of glacier-wide and band records."""
    from ...core.massbalance.topography import Topography
    topo = Topography(p["DEM"])
    sites = {}
    for g in sorted({o.glacier for o in obs if o.point_id == "glacier-wide" or o.point_id.startswith("band:")}):
        sites[g] = topo.cells(ids[g][0], ids[g][1])[0]  # all: each record samples its own area
        if not sites[g]:
            progress.warning(f"{g}: no DEM cell inside the outline; its records are left out")
    return sites


def _fog_records(p, hemi_choice, progress):
    """Observations from the WGMS FoG release in WGMS: glacier-wide and band records on the
    INVENTORY glaciers they are linked to (RGI links of glacier.csv, else position), points
    where they were measured. (observations, rows left out, {glacier: [Site]})."""
    from ...core.geodesy import to_lonlat
    from ...core.massbalance import fog
    from ...core.massbalance.seasons import hemisphere
    limit = float(p.get("MAX_DATE_UNCERTAINTY") if p.get("MAX_DATE_UNCERTAINTY") not in (None, "") else 5)
    try:
        release = fog.read_release(p["WGMS"], limit)
    except ValueError as err:
        raise ValueError(str(err).replace("OBSERVATIONS:", "WGMS:", 1)) from None
    progress.info(f"WGMS: {release.layout} layout (balances in {release.units} w.e.): {len(release.glaciers)} glacier(s), "
                  f"{len(release.records)} glacier-wide/band and {len(release.points)} point record(s)")
    for reason, n in sorted(release.left_out.items()):
        progress.warning(f"WGMS: {n} record(s) left out: {reason} (MAX_DATE_UNCERTAINTY={limit:g} days)")
    left = sum(release.left_out.values())
    if not p.get("INVENTORY"):
        if release.records:
            progress.warning(f"WGMS: {len(release.records)} glacier-wide/band record(s) left out: give INVENTORY (and "
                             "DEM) to place them on the glaciers' cells")
        return fog.point_glaciers(release.points, {}, [], []), left + len(release.records), {}
    ids, place_of = _outlines(p, hemi_choice, progress)
    outlines = [to_lonlat(g, crs) for g, crs in ids.values()]
    matches = fog.match_glaciers(release.glaciers, list(ids), outlines)
    if release.records and not matches and not release.points:  # refused before any work
        names = [f"{g.wgms_id} {g.name}".strip() for g in release.glaciers.values()]
        raise ValueError(f"WGMS: none of its {len(names)} glacier(s) ({', '.join(names[:5])}"
                         + (" ..." if len(names) > 5 else "") + ") is in INVENTORY, by RGI/GLIMS link or by position: "
                         "give the inventory of the glaciers the records are of")
    how = {k: sum(1 for _, h in matches.values() if h == k) for k in ("link", "location")}
    progress.info(f"WGMS: {len(matches)} WGMS glacier(s) matched to INVENTORY: {how['link']} by RGI/GLIMS link, "
                  f"{how['location']} by position")
    obs, unmatched = fog.observations(release, lambda gid: matches.get(gid, (None,))[0],
                                      lambda g: place_of(g)[:2], lambda lat: hemisphere(lat, hemi_choice))
    if unmatched:
        names = [f"{gid} {release.glaciers[gid].name}".strip() if gid in release.glaciers else gid for gid in unmatched]
        progress.warning(f"WGMS: {sum(unmatched.values())} record(s) of {len(unmatched)} glacier(s) not in INVENTORY "
                         "(no RGI link to its ids, position outside its outlines): " + ", ".join(names[:20])
                         + (" ..." if len(names) > 20 else ""))
    obs += fog.point_glaciers(release.points, matches, list(ids), outlines)
    return obs, left + sum(unmatched.values()), _sites(p, ids, obs, progress)


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
