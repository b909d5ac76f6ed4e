"""The engine's steps: one per algorithm, from plain parameters (paths, numbers, strings;
keyed by the algorithm's parameter names) to files and a result dictionary.

QGIS (through `algorithms/`) and the command line (`cli.py`) call these with the same
names; feature sources arrive as vector files (QGIS exports layers, selections and memory
layers to a temporary GeoPackage), feature sinks leave as GeoPackages (QGIS copies them into
the sink the user chose)."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from ..core.progress import Progress

STEPS: dict = {}


def step(name):
    def register(fn):
        STEPS[name] = fn
        return fn
    return register


# --------------------------------------------------------------------------- helpers

def layer_ref(value: str) -> tuple[str, str | None]:
    """'file.gpkg|layername=inventory' -> ('file.gpkg', 'inventory')."""
    path, _, rest = str(value).partition("|")
    layer = None
    for part in rest.split("|"):
        if part.startswith("layername="):
            layer = part.split("=", 1)[1]
    return path, layer


def read_source(p, key):
    from ..core.vector import read_layer
    value = p.get(key)
    if not value:
        raise ValueError(f"{key}: give a vector file")
    path, layer = layer_ref(value)
    try:
        return read_layer(path, layer)
    except FileNotFoundError:
        raise FileNotFoundError(f"{key}: cannot open {value}") from None


def inventory(p, key="INVENTORY", id_key="ID_FIELD", progress=None):
    """(Inventory, the layer it was read from); invalid outlines repaired with a warning."""
    from ..core.labels import Inventory
    lyr = read_source(p, key)
    if lyr.geometries is None or any(g is not None and g.geom_type not in ("Polygon", "MultiPolygon")
                                     for g in lyr.geometries):
        raise ValueError(f"{key} must be a polygon layer")
    if not lyr.records:
        raise ValueError(f"{key} has no feature")
    id_field = p.get(id_key) or None
    names = list(lyr.records[0])
    if id_field and id_field not in names:
        raise ValueError(f"{id_key}: {key} has no field {id_field!r} (fields: {', '.join(names)})")
    ids = [r[id_field] for r in lyr.records] if id_field else list(range(1, len(lyr.records) + 1))
    from shapely import make_valid
    from shapely.geometry import MultiPolygon
    geometries = list(lyr.geometries)
    repaired = []
    for k, g in enumerate(geometries):
        if g is not None and not g.is_empty and not g.is_valid:  # self-intersections and the like
            fixed = make_valid(g)
            if fixed.geom_type == "GeometryCollection":
                fixed = MultiPolygon([p for part in fixed.geoms
                                      for p in (part.geoms if part.geom_type == "MultiPolygon" else [part])
                                      if p.geom_type == "Polygon"])
            geometries[k] = fixed
            repaired.append(str(ids[k]))
    if repaired and progress is not None:
        progress.warning(f"{key}: {len(repaired)} invalid outline(s) repaired (make_valid): "
                         + ", ".join(repaired[:20]) + (" ..." if len(repaired) > 20 else ""))
    empty = [str(i) for i, g in zip(ids, geometries) if g is None or g.is_empty]
    if empty and progress is not None:
        progress.warning(f"{key}: {len(empty)} feature(s) without an outline (kept in the tables): "
                         + ", ".join(empty[:20]) + (" ..." if len(empty) > 20 else ""))
    lyr.geometries = geometries
    return Inventory(ids, geometries, lyr.crs, lyr.records), lyr


def column_types(rows, types=None) -> dict:
    """Column -> Python type: `types` first, else the type of the first value (numpy scalars
    as the Python numbers they are); anything else is text."""
    fields = dict(types or {})
    for row in rows:
        for k, v in row.items():
            if k not in fields and v is not None:
                fields[k] = type(v.item()) if hasattr(v, "item") else type(v)
    return {k: (t if t in (int, float, str, bool, dt.date) else str) for k, t in fields.items()}


def write_table(path, rows, types=None, name="table"):
    """A table (GeoPackage without geometry); types fix column types (numbers stay numbers)."""
    from ..core.vector import VectorLayer, write_gpkg
    fields = column_types(rows, types)
    if rows:
        fields = {k: fields.get(k, str) for k in rows[0]} | fields
    write_gpkg(path, [VectorLayer(name, "", None, [_plain_row(r) for r in rows], fields)])
    return str(path)


def write_joined(path, layer, rows, types=None, name="glaciers"):
    """The source polygons with their attributes and the per-feature `rows` joined."""
    from ..core.vector import VectorLayer, write_gpkg
    fields = dict(layer.field_types(), **column_types(rows, types))
    records = [dict(rec, **_plain_row(row)) for rec, row in zip(layer.records, rows)]
    write_gpkg(path, [VectorLayer(name, layer.crs, layer.geometries, records, fields)])
    return str(path)


def _plain_row(row):
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[k] = v
    return out


def number(p, key, default=None):
    value = p.get(key)
    return default if value in (None, "") else float(value)


def paths(p, key):
    value = p.get(key) or []
    return [str(v) for v in ([value] if isinstance(value, str) else value)]


def pool_of(p, progress, threads: int = 1):
    """Where the step's pieces run: the Dask cluster of DASK_SCHEDULER, else here."""
    from ..core.cluster import open_pool
    return open_pool(p.get("DASK_SCHEDULER"), progress, threads)


def require(p, *keys):
    for key in keys:
        if p.get(key) in (None, "", []):
            raise ValueError(f"{key} is required")


# --------------------------------------------------------------------------- data

@step("synthetic_region")
def synthetic_region(p, progress: Progress):
    from ..core.synthetic import make_region
    require(p, "OUTPUT_FOLDER")
    region = make_region(p["OUTPUT_FOLDER"], seed=int(p.get("SEED", 42)), size_km=float(p.get("SIZE_KM", 4.0)),
                         n_glaciers=int(p.get("N_GLACIERS", 8)), start_year=int(p.get("START_YEAR", 2015)),
                         end_year=int(p.get("END_YEAR", 2023)), progress=progress)
    return {"OUTPUT_FOLDER": str(region.folder), "IMAGERY_START": str(region.imagery_start),
            "IMAGERY_END": str(region.imagery_end), "DEM": str(region.dem),
            "INVENTORY": f"{region.inventory}|layername=inventory", "TRUTH_START": str(region.truth_start),
            "TRUTH_END": str(region.truth_end), "GLACIER_COUNT": region.n_glaciers,
            "TRUE_REGIONAL_RATE": region.true_regional_rate_pct_yr,
            "START_DATE": str(region.start_date), "END_DATE": str(region.end_date)}


ACQUISITION_TYPES = {"glacier_id": str, "status": str, "collection": str, "scene_id": str, "date": str,
                     "cloud_pct": float, "masked_pct": float, "snow_pct": float, "cloud_only_snow_pct": float,
                     "candidates": int, "offset_in_dn": str, "offset_decided_by": str, "offset_metadata": str,
                     "offset_pixels": str, "dark_dn": float, "file": str, "detail": str}


@step("acquire_imagery")
def acquire_imagery(p, progress: Progress):
    from ..core.acquire import AcquireOptions, acquire
    inv, _ = inventory(p, progress=progress)
    text = str(p.get("DATE") or "").strip()
    try:
        date = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"DATE must be YYYY-MM-DD, not {text!r}") from None
    selection = str(p.get("SELECTION") or "cloud")  # QGIS and the CLI both pass the option's name
    options = AcquireOptions(date=date, window_days=int(p.get("WINDOW_DAYS", 15)),
                             max_candidates=int(p.get("MAX_CANDIDATES", 5)),
                             stac_url=str(p.get("STAC_URL") or "").strip() or AcquireOptions.stac_url,
                             collection=str(p.get("COLLECTION") or "").strip() or AcquireOptions.collection,
                             buffer_m=float(p.get("BUFFER_M", 1280.0)),
                             dem=str(p.get("DEM") or "").strip() or None,
                             max_workers=int(p.get("MAX_WORKERS", 4)), selection=selection)
    require(p, "OUTPUT_FOLDER")
    folder = p["OUTPUT_FOLDER"]
    glaciers = list(zip(inv.ids, inv.geometries, [inv.crs] * len(inv.ids)))  # every glacier gets a row
    with pool_of(p, progress, options.max_workers) as pool:
        results = acquire(glaciers, options, folder, progress, pool=pool)
    rows = [{name: (str(r.id) if name == "glacier_id" else getattr(r, name)) for name in ACQUISITION_TYPES}
            for r in results]
    out = {"OUTPUT_FOLDER": folder, "FILES": [r.file for r in results if r.file]}
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_table(p["OUTPUT"], rows, ACQUISITION_TYPES, "acquisition")
    n_ok = sum(r.status in ("ok", "exists") for r in results)
    progress.info(f"{n_ok} of {len(results)} glaciers have imagery in {folder}")
    for r in results:
        if r.status not in ("ok", "exists"):
            progress.warning(f"{r.id}: {r.status}: {r.detail}")
    out["N_OK"] = n_ok
    return out


# --------------------------------------------------------------------------- segmentation

def training_inputs(p, progress=None):
    from ..core.bands import canonical, parse_mapping
    from ..core.train import TrainOptions
    require(p, "INPUT")
    inv, layer = inventory(p, progress=progress)
    text = str(p.get("BANDS") or "").strip()
    mapping = parse_mapping(text) if "=" in text else None
    bands = list(mapping) if mapping else ([canonical(b) for b in text.split(",") if b.strip()] or None)
    options = TrainOptions(
        patch_size=int(p.get("PATCH_SIZE", 256)), encoder=str(p.get("ENCODER") or "resnet34"),
        epochs=int(p.get("EPOCHS", 30)), batch_size=int(p.get("BATCH_SIZE", 8)),
        learning_rate=float(p.get("LEARNING_RATE", 1e-3)), device=str(p.get("DEVICE") or "auto"),
        seed=int(p.get("SEED", 42)), val_fraction=float(p.get("VAL_FRACTION", 0.2)),
        quality=str(p.get("QUALITY") or "none"), bands=bands, mapping=mapping,
        encoder_weights=str(p.get("ENCODER_WEIGHTS") or "none"),
        patch_cache=p.get("PATCH_CACHE") or None, keep_patches=bool(p.get("KEEP_PATCHES", False)))
    return paths(p, "INPUT"), inv, layer, (p.get("DEM") or None), options


@step("train_model")
def train_model(p, progress: Progress):
    from ..core.train import train_ensemble, train_model as train
    rasters, inv, _, dem, options = training_inputs(p, progress)
    require(p, "OUTPUT_MODEL")
    if not Path(p["OUTPUT_MODEL"]).suffix:  # "model" -> "model.gmm": the file says what it is
        p["OUTPUT_MODEL"] = str(p["OUTPUT_MODEL"]) + ".gmm"
    members = int(p.get("MEMBERS") or 1)
    if members == 1 and not p.get("DASK_SCHEDULER"):
        result = train(rasters, inv, p["OUTPUT_MODEL"], dem, options, progress)
        return {"OUTPUT_MODEL": p["OUTPUT_MODEL"], "BEST_EPOCH": result.best_epoch,
                "VAL_IOU": result.header.metrics.get("val_iou_per_glacier"), "MODELS": [p["OUTPUT_MODEL"]]}
    with pool_of(p, progress) as pool:
        trained = train_ensemble(rasters, inv, p["OUTPUT_MODEL"], dem, options, members, progress, pool)
    return {"OUTPUT_MODEL": p["OUTPUT_MODEL"], "BEST_EPOCH": trained[0]["best_epoch"],
            "VAL_IOU": trained[0]["val_iou"], "MODELS": [t["model"] for t in trained]}


CV_TYPES = {"subregion": str, "patches": int, "glaciers": int, "accuracy": float, "iou": float,
            "precision": float, "recall": float, "f1": float}


@step("cross_validate")
def cross_validate(p, progress: Progress):
    from ..core.crossval import cross_validate as crossval
    rasters, inv, layer, dem, options = training_inputs(p, progress)
    require(p, "OUTPUT_FOLDER")
    with pool_of(p, progress) as pool:
        cv = crossval(rasters, inv, p["OUTPUT_FOLDER"], dem, int(p.get("FOLDS", 5)), options, progress,
                      members=int(p.get("MEMBERS") or 1), pool=pool)
    rows = cv.table()
    for r in rows:
        progress.info(f"{r['subregion']:>8}: IoU {r['iou']:.4f}  F1 {r['f1']:.4f}  "
                      f"precision {r['precision']:.4f}  recall {r['recall']:.4f}")
    out = {"OUTPUT_FOLDER": p["OUTPUT_FOLDER"], "PREDICTIONS": [str(x) for x in cv.predictions]}
    if p.get("OUTPUT_TABLE"):
        out["OUTPUT_TABLE"] = write_table(p["OUTPUT_TABLE"], rows, CV_TYPES, "crossval")
    if p.get("OUTPUT_INVENTORY"):
        out["OUTPUT_INVENTORY"] = write_joined(p["OUTPUT_INVENTORY"], layer,
                                               [{"fold": f + 1} for f in cv.folds], {"fold": int})
    return out


@step("segment_glaciers")
def segment_glaciers(p, progress: Progress):
    from ..core.bands import parse_mapping
    from ..core.segment import SegmentOptions, segment, segment_blocks
    require(p, "INPUT", "MODEL", "OUTPUT_PROBABILITY")
    mask_geoms = []
    if p.get("MASK_LAYER"):
        import rasterio
        from ..core.labels import Inventory
        lyr = read_source(p, "MASK_LAYER")
        with rasterio.open(p["INPUT"]) as src:
            crs = src.crs.to_wkt()
        geoms = [g for g in lyr.geometries or [] if g is not None]
        mask_geoms = Inventory(list(range(len(geoms))), geoms, lyr.crs).to_crs(crs).geometries
    threshold = p.get("THRESHOLD")
    options = SegmentOptions(
        tile_size=int(p.get("TILE_SIZE", 512)), overlap=int(p.get("OVERLAP", 64)),
        batch_size=int(p.get("BATCH_SIZE", 4)),
        threshold=None if threshold in (None, "") else float(threshold),
        device=str(p.get("DEVICE") or "auto"), precision=str(p.get("PRECISION") or "auto"),
        probability_dtype=str(p.get("PROBABILITY_FORMAT") or "float32"),
        bands=parse_mapping(p.get("BANDS")) or None, mask_geometries=mask_geoms,
        mask_buffer_m=float(p.get("MASK_BUFFER", 500.0)), min_area_km2=float(p.get("MIN_AREA", 0.01)),
        simplify_m=float(p.get("SIMPLIFY", 0.0)))
    prob, mask, poly = p["OUTPUT_PROBABILITY"], p.get("OUTPUT_MASK") or None, p.get("OUTPUT_POLYGONS") or None
    if poly and not str(poly).lower().endswith(".gpkg"):
        raise ValueError(f"OUTPUT_POLYGONS must be a GeoPackage (.gpkg), not {poly}")
    if poly and not mask:
        raise ValueError("OUTPUT_POLYGONS is made from the mask: set OUTPUT_MASK too")
    from ..core.model_file import ModelFileError
    try:
        if p.get("DASK_SCHEDULER"):
            with pool_of(p, progress) as pool:
                result = segment_blocks(p["INPUT"], p["MODEL"], prob, mask, poly, p.get("DEM") or None,
                                        options, progress, pool)
        else:
            result = segment(p["INPUT"], p["MODEL"], prob, mask, poly, p.get("DEM") or None, options, progress)
    except ModelFileError as err:
        raise ValueError(f"MODEL: {err}") from None
    return {"OUTPUT_PROBABILITY": prob, "OUTPUT_MASK": mask, "OUTPUT_POLYGONS": poly,
            "GLACIER_AREA_KM2": result.glacier_area_km2, "DEVICE_USED": result.device,
            "PRECISION_USED": result.precision}


@step("evaluate_segmentation")
def evaluate_segmentation(p, progress: Progress):
    from ..core.evaluate import evaluate
    require(p, "PREDICTION")
    inv, layer = inventory(p, progress=progress)
    with pool_of(p, progress) as pool:
        ev = evaluate(p["PREDICTION"], inv, p.get("QUALITY") or None, threshold=float(p.get("THRESHOLD", 0.5)),
                      progress=progress, pool=pool)
    rows = [dict(r, id=str(r["id"])) for r in ev.glaciers]
    o = ev.overall
    progress.info(f"pixels: IoU {o['iou']:.4f}, F1 {o['f1']:.4f}, precision {o['precision']:.4f}, "
                  f"recall {o['recall']:.4f}, accuracy {o['accuracy']:.4f}")
    out = {"ACCURACY": o["accuracy"], "IOU": o["iou"], "PRECISION": o["precision"],
           "RECALL": o["recall"], "F1": o["f1"]}
    if p.get("OUTPUT_TABLE"):
        out["OUTPUT_TABLE"] = write_table(p["OUTPUT_TABLE"], rows, name="evaluation")
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_joined(p["OUTPUT"], layer, [{k: v for k, v in r.items() if k != "id"}
                                                          for r in ev.glaciers])
    return out


# --------------------------------------------------------------------------- area change

AREA_TYPES = {"area_inventory_km2": float, "area_start_km2": float, "area_end_km2": float,
              "recall": float, "recall_end": float, "masked_start": float, "masked_end": float,
              "year_start": float, "year_end": float, "rate_km2_yr": float, "rate_pct_yr": float,
              "area_start_sigma_km2": float, "area_end_sigma_km2": float,
              "rate_sigma_km2_yr": float, "rate_sigma_pct_yr": float, "snr": float,
              "kept": bool, "filter_reason": str}


def year_of(value):
    """Decimal year of a date-like attribute (date, 'YYYY-MM-DD', 2015, '2015')."""
    from ..core.area_change import decimal_year
    if value is None:
        return float("nan")
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return decimal_year(value)
    text = str(value).strip().replace("/", "-")
    try:
        return decimal_year(dt.date.fromisoformat(text[:10]))
    except ValueError:
        pass
    try:
        year = float(text)
    except ValueError:
        return float("nan")
    # RGI writes unknown dates as -9999999 (or 99999999): never a year.
    return year if 1900 <= year <= 2200 else float("nan")


@step("area_change")
def area_change(p, progress: Progress):
    from ..core.area_change import AreaChangeOptions, area_change as change
    from ..core.report import write_report
    require(p, "START", "END")
    inv, layer = inventory(p, progress=progress)
    date_field = p.get("DATE_FIELD") or None
    years = [year_of(r.get(date_field)) for r in inv.records] if date_field else None
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
        write_report(report, result, used)
        out["OUTPUT_REPORT"] = report
    for reason, count in sorted(result.filter_counts.items()):
        progress.info(f"{count:5d} glaciers: {reason}")
    return out


# --------------------------------------------------------------------------- mass balance

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
    from ..core.mass_balance import MBMOptions
    from ..core.mbm_workflow import train_mbm
    from ..core.stakes import observations_from_rows, observations_from_stake_table
    require(p, "OBSERVATIONS", "CLIMATE", "OUTPUT_MODEL")
    table = read_source(p, "OBSERVATIONS")
    rows = table.records
    names = list(rows[0]) if rows else []
    units = str(p.get("UNITS") or "m")
    hemi_choice = str(p.get("HEMISPHERE") or "auto")
    from ..core.wgms import is_record_table, records_from_table
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
SITES_PER_GLACIER = 200  # DEM cells sampled per glacier for glacier-wide/band records


def _glacier_records(p, rows, units, hemi_choice, progress):
    """Glacier-wide and band records placed on the INVENTORY glaciers' DEM cells:
    (observations, rows dropped, {glacier: [Site]})."""
    from ..core.geodesy import to_lonlat
    from ..core.seasons import hemisphere
    from ..core.topography import Topography
    from ..core.wgms import records_from_table
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
        sites[g] = topo.cells(ids[g][0], ids[g][1], max_sites=SITES_PER_GLACIER, seed=0)[0]
        if not sites[g]:
            progress.warning(f"{g}: no DEM cell inside the outline; its records are left out")
    return obs, sum(len(v) for v in problems.values()), sites


@step("predict_mass_balance")
def predict_mass_balance(p, progress: Progress):
    from ..core.mbm_workflow import plot_series, predict_mbm
    require(p, "MODEL", "CLIMATE", "DEM", "OUTPUT_FOLDER")
    inv, _ = inventory(p, progress=progress)
    folder = p["OUTPUT_FOLDER"]
    with pool_of(p, progress) as pool:
        series = predict_mbm(p["MODEL"], list(zip(inv.ids, inv.geometries, [inv.crs] * len(inv.ids))),
                             paths(p, "CLIMATE"), p["DEM"], int(p.get("START_YEAR", 2000)),
                             int(p.get("END_YEAR", 2020)), folder, climate_variables(p.get("CLIMATE_VARIABLES")),
                             p.get("CLIMATE_ELEVATION") or None, progress, str(p.get("HEMISPHERE") or "auto"), pool)
    rows = [r for s in series for r in s.rows]
    if not rows:
        raise ValueError("no glacier of INVENTORY has DEM cells inside its outline")
    png = plot_series(series, f"{folder}/mass_balance.png")
    out = {"OUTPUT_FOLDER": folder, "PLOT": str(Path(png).with_suffix(".html")),
           "RASTERS": [str(s.raster) for s in series if s.raster]}
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_table(p["OUTPUT"], rows, {"glacier_id": str, "year": int, "ba": float,
                                                        "bw": float, "bs": float}, "balances")
    return out
