"""GeoPackage reading and writing through GDAL/OGR (the GDAL that QGIS itself uses)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from osgeo import ogr, osr
from shapely import wkb as shapely_wkb

from .io import atomic_output

ogr.UseExceptions()
osr.UseExceptions()

_OGR_TYPES = {int: ogr.OFTInteger64, float: ogr.OFTReal, str: ogr.OFTString,
              bool: ogr.OFTInteger, dt.date: ogr.OFTDate}


@dataclass
class VectorLayer:
    """Polygons (shapely) with attribute records, in one CRS given as WKT or EPSG code."""
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


def _srs(crs: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.SetFromUserInput(str(crs))
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_gpkg(path, layers: list[VectorLayer]) -> Path:
    """Write one or more polygon layers to a GeoPackage, atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
        for layer in layers:
            _write_layer(ds, layer)
        ds = None  # noqa: F841 (closes and flushes the file)
    return path


def _write_layer(ds, layer: VectorLayer) -> None:
    lyr = ds.CreateLayer(layer.name, _srs(layer.crs), ogr.wkbMultiPolygon,
                         options=["SPATIAL_INDEX=YES"])
    types = layer.field_types()
    for name, typ in types.items():
        defn = ogr.FieldDefn(name, _OGR_TYPES.get(typ, ogr.OFTString))
        if typ is bool:
            defn.SetSubType(ogr.OFSTBoolean)
        lyr.CreateField(defn)
    lyr.StartTransaction()
    for geom, rec in zip(layer.geometries, layer.records):
        feat = ogr.Feature(lyr.GetLayerDefn())
        for name, typ in types.items():
            value = rec.get(name)
            if value is None:
                feat.SetFieldNull(name)
            elif typ is dt.date:
                feat.SetField(name, value.year, value.month, value.day, 0, 0, 0, 0)
            elif typ is bool:
                feat.SetField(name, int(bool(value)))
            else:
                feat.SetField(name, value)
        if geom is not None and not geom.is_empty:
            g = ogr.CreateGeometryFromWkb(bytes(geom.wkb))
            feat.SetGeometry(ogr.ForceToMultiPolygon(g))
        lyr.CreateFeature(feat)
    lyr.CommitTransaction()


def read_layer(path, layer: str | None = None) -> VectorLayer:
    """Read a polygon layer (any OGR format) into shapely geometries and plain records."""
    ds = ogr.Open(str(path))
    if ds is None:
        raise FileNotFoundError(f"cannot open vector file {path}")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        raise ValueError(f"{path} has no layer {layer!r}")
    srs = lyr.GetSpatialRef()
    crs = srs.ExportToWkt(["FORMAT=WKT2_2018"]) if srs is not None else ""
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    geoms, records = [], []
    for feat in lyr:
        g = feat.GetGeometryRef()
        geoms.append(shapely_wkb.loads(bytes(g.ExportToWkb())) if g is not None else None)
        records.append({n: feat.GetField(n) for n in names})
    return VectorLayer(lyr.GetName(), crs, geoms, records)
