"""What every step shares: the registry, reading feature sources and inventories, writing
tables and joined layers, and the pool a step's pieces run on."""
from __future__ import annotations

import datetime as dt
import math

STEPS: dict = {}


def step(name):
    """Registers a step under its algorithm's name (the id after `glacier_mapper:`)."""
    def register(fn):
        STEPS[name] = fn
        return fn
    return register


def layer_ref(value: str) -> tuple[str, str | None]:
    """'file.gpkg|layername=inventory' -> ('file.gpkg', 'inventory')."""
    path, _, rest = str(value).partition("|")
    layer = None
    for part in rest.split("|"):
        if part.startswith("layername="):
            layer = part.split("=", 1)[1]
    return path, layer


def read_source(p, key):
    from ...core.vector import read_layer
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
    from ...core.labels import Inventory
    lyr = read_source(p, key)
    from ...core.inventories import glims_outlines, is_glims
    if lyr.geometries is not None and is_glims(lyr.records):  # GLIMS as distributed: one row per line type
        lyr.geometries, lyr.records, report = glims_outlines(lyr.geometries, lyr.records, p.get("GLIMS_ANALYSIS"))
        for line in report:
            if progress is not None:
                progress.info(f"{key}: {line}")
    if lyr.geometries is None or any(g is not None and g.geom_type not in ("Polygon", "MultiPolygon")
                                     for g in lyr.geometries):
        raise ValueError(f"{key} must be a polygon layer")
    if not lyr.records:
        raise ValueError(f"{key} has no feature")
    id_field = p.get(id_key) or None
    names = list(lyr.records[0])
    if id_field and id_field not in names:
        raise ValueError(f"{id_key}: {key} has no field {id_field!r} (fields: {', '.join(names)})")
    if not id_field:
        id_field = _published_id(lyr.records, names, key, id_key, progress)
    lyr.id_field = id_field  # the column the ids came from (None: feature numbers)
    ids = [r[id_field] for r in lyr.records] if id_field else list(range(1, len(lyr.records) + 1))
    from ...core.identity import check_ids
    check_ids(ids, id_key, id_field, key)
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
    from ...core.identity import fingerprint
    seen: dict = {}
    for i, g in zip(ids, geometries):
        if g is not None and not g.is_empty:
            seen.setdefault(fingerprint(g), []).append(str(i))
    twins = [group for group in seen.values() if len(group) > 1]
    if twins:  # the copy would take every pixel and the original get nothing
        raise ValueError(f"{key}: {len(twins)} outline(s) appear more than once ("
                         + "; ".join(" = ".join(g) for g in twins[:10]) + (" ..." if len(twins) > 10 else "")
                         + "): the same glacier twice; remove the copies")
    empty = [str(i) for i, g in zip(ids, geometries) if g is None or g.is_empty]
    if empty and progress is not None:
        progress.warning(f"{key}: {len(empty)} feature(s) without an outline (kept in the tables): "
                         + ", ".join(empty[:20]) + (" ..." if len(empty) > 20 else ""))
    lyr.geometries = geometries
    return Inventory(ids, geometries, lyr.crs, lyr.records), lyr


def join_columns(layer, id_field, ids) -> list[dict]:
    """Per glacier, the inventory's id under its own column name and the glacier's name where
    the inventory has one (RGI 7 glac_name, RGI 6 Name, ...): tables that are not joined
    layers still join back to the outlines in QGIS."""
    from ...core.inventories import NAME_COLUMNS, find_column
    names = list(layer.records[0]) if layer.records else []
    name = find_column(names, NAME_COLUMNS)
    out = []
    for gid, rec in zip(ids, layer.records):
        row = {id_field: str(gid)} if id_field else {}
        if name:
            row[name[0]] = "" if rec.get(name[0]) is None else str(rec.get(name[0]))
        out.append(row)
    return out


def _published_id(records, names, key, id_key, progress):
    """The id column of a published inventory (RGI 7 rgi_id, RGI 6 RGIId, GLIMS glac_id, ...)
    when ID_FIELD is empty, if its values are unique; None (feature numbers) otherwise."""
    from ...core.inventories import ID_COLUMNS, find_column
    found = find_column(names, ID_COLUMNS)
    if found:
        column, source = found
        values = [r.get(column) for r in records]
        if None not in values and "" not in values and len(set(map(str, values))) == len(values):
            if progress is not None:
                progress.info(f"{key}: glacier ids from its column {column} ({source}); set {id_key} to use another")
            return column
        if progress is not None:
            progress.warning(f"{key}: its column {column} ({source}) has empty or repeated values, so it cannot "
                             "name the glaciers")
    if progress is not None:
        progress.warning(f"{key}: no id column ({', '.join(c for c, _ in ID_COLUMNS[1:4])}, ...): glaciers are "
                         f"numbered 1..{len(records)} in feature order; set {id_key} to link results to outlines")
    return None


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
    from ...core.vector import VectorLayer, write_gpkg
    fields = column_types(rows, types)
    if rows:
        fields = {k: fields.get(k, str) for k in rows[0]} | fields
    write_gpkg(path, [VectorLayer(name, "", None, [_plain_row(r) for r in rows], fields)])
    return str(path)


def write_joined(path, layer, rows, types=None, name="glaciers"):
    """The source polygons with their attributes and the per-feature `rows` joined."""
    from ...core.vector import VectorLayer, write_gpkg
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
    from ...core.cluster import open_pool
    return open_pool(p.get("DASK_SCHEDULER"), progress, threads)


def require(p, *keys):
    for key in keys:
        if p.get(key) in (None, "", []):
            raise ValueError(f"{key} is required")
