"""GeoPackage reading and writing through pyogrio (GDAL/OGR in the engine's environment)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio.raw
from pyproj import CRS
from shapely import wkb as shapely_wkb
from shapely.geometry import MultiPolygon, Polygon

from .io import atomic_output


@dataclass
class VectorLayer:
    """Polygons (shapely; None for a table without geometry) with attribute records, in one
    CRS given as WKT or EPSG code."""
    name: str
    crs: str
    geometries: list
    records: list[dict]
    fields: dict[str, type] = field(default_factory=dict)

    def field_types(self) -> dict[str, type]:
        if self.fields:
            return self.fields
        types: dict[str, type] = {}
        for rec in self.records:
            for key, value in rec.items():
                if value is not None and key not in types:
                    types[key] = type(value)
        return types


_NUMPY_TYPES = {int: "int64", float: "float64", bool: "bool"}


def write_gpkg(path, layers: list[VectorLayer]) -> Path:
    """Write one or more layers (polygons, or tables when `geometries` is None) to a
    GeoPackage, atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        for i, layer in enumerate(layers):
            _write_layer(tmp, layer, append=i > 0)
    return path


def _column(values, typ):
    if typ in _NUMPY_TYPES and typ is not bool:
        return np.array([np.nan if v is None else v for v in values], dtype="float64") \
            if typ is float else np.array([0 if v is None else int(v) for v in values], dtype="int64")
    if typ is bool:
        return np.array([bool(v) for v in values], dtype="bool")
    if typ is dt.date:
        return np.array([None if v is None else np.datetime64(v, "D") for v in values], dtype="datetime64[D]")
    return np.array([None if v is None else str(v) for v in values], dtype=object)


def _write_layer(path, layer: VectorLayer, append: bool) -> None:
    types = layer.field_types()
    names = list(types)
    data, masks = [], []
    for name in names:
        values = [rec.get(name) for rec in layer.records]
        data.append(_column(values, types[name]))
        masks.append(np.array([v is None for v in values]) if types[name] in (int, bool) else None)
    table = layer.geometries is None
    geometry = None
    if not table:
        geometry = np.array([None if g is None or g.is_empty else
                             shapely_wkb.dumps(MultiPolygon([g]) if isinstance(g, Polygon) else g)
                             for g in layer.geometries], dtype=object)
    pyogrio.raw.write(str(path), geometry, data, names,
                      field_mask=masks if any(m is not None for m in masks) else None,
                      layer=layer.name, driver="GPKG", append=append,
                      geometry_type=None if table else "MultiPolygon",
                      crs=None if table or not layer.crs else CRS.from_user_input(layer.crs).to_wkt(),
                      layer_options=None if table else {"SPATIAL_INDEX": "YES"},
                      # GeoPackage 1.2: read without warnings by the older GDALs of QGIS LTRs.
                      dataset_options=None if append else {"VERSION": "1.2"})


def _python(value):
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else value.astype("datetime64[D]").astype(dt.date)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def read_layer(path, layer: str | None = None) -> VectorLayer:
    """Read a polygon layer or a table (any OGR format) into shapely geometries (None for a
    table) and plain records."""
    path = str(path)
    if not Path(path).exists() and "://" not in path:
        raise FileNotFoundError(f"cannot open vector file {path}")
    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
        if layer is not None and layer not in layers:
            raise ValueError(f"{path} has no layer {layer!r}")
        meta, _, geometry, field_data = pyogrio.raw.read(path, layer=layer)
    except pyogrio.errors.DataSourceError as err:
        raise FileNotFoundError(f"cannot open vector file {path}: {err}") from None
    names = list(meta["fields"])
    n = len(field_data[0]) if field_data else (len(geometry) if geometry is not None else 0)
    records = [{name: _python(col[i]) for name, col in zip(names, field_data)} for i in range(n)]
    crs = CRS.from_user_input(meta["crs"]).to_wkt() if meta.get("crs") else ""
    geoms = None if meta.get("geometry_type") in (None, "Unknown") and geometry is None else \
        [None if g is None else shapely_wkb.loads(bytes(g)) for g in geometry]
    name = layer or layers[0]
    return VectorLayer(name, crs, geoms, records)
