"""Translating between QGIS layers and core objects (inventories, tables)."""
from __future__ import annotations

import datetime
import math

from qgis.core import (QgsFeature, QgsFeatureRequest, QgsFeatureSink, QgsField, QgsFields,
                       QgsProcessingException, QgsWkbTypes)
from qgis.PyQt.QtCore import QDate, QDateTime, QVariant
from shapely import wkb

from ..core.labels import Inventory

_QVARIANT = {int: QVariant.LongLong, float: QVariant.Double, str: QVariant.String,
             bool: QVariant.Bool}


def plain_value(value):
    """QVariant-ish attribute values -> plain Python."""
    if isinstance(value, QDate):
        return value.toPyDate()
    if isinstance(value, QDateTime):
        return value.toPyDateTime()
    if isinstance(value, QVariant):
        return None if value.isNull() else value.value()
    return value


def inventory_from_source(source, id_field=None, parameter="INVENTORY") -> Inventory:
    """A core Inventory from a QGIS feature source (any CRS, selected features respected by
    the source). Ids from `id_field`, else the feature ids."""
    if source is None:
        raise QgsProcessingException(f"{parameter}: layer not found")
    if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PolygonGeometry:
        raise QgsProcessingException(f"{parameter} must be a polygon layer")
    names = source.fields().names()
    if id_field and id_field not in names:
        raise QgsProcessingException(f"ID_FIELD: {parameter} has no field {id_field!r} "
                                     f"(fields: {', '.join(names)})")
    ids, geoms, records = [], [], []
    for feat in source.getFeatures(QgsFeatureRequest()):
        g = feat.geometry()
        geoms.append(None if g.isNull() else wkb.loads(bytes(g.asWkb())))
        rec = {n: plain_value(feat[n]) for n in names}
        records.append(rec)
        ids.append(rec[id_field] if id_field else feat.id())
    if not ids:
        raise QgsProcessingException(f"{parameter} has no feature")
    return Inventory(ids, geoms, source.sourceCrs().toWkt(), records)


def fields_for(rows: list[dict], types: dict | None = None) -> QgsFields:
    fields = QgsFields()
    keys = list(rows[0]) if rows else list(types or {})
    for key in keys:
        typ = (types or {}).get(key)
        if typ is None:
            typ = next((type(r[key]) for r in rows if r.get(key) is not None), str)
        fields.append(QgsField(key, _QVARIANT.get(typ, QVariant.String)))
    return fields


def _value(v):
    if hasattr(v, "item"):  # numpy scalars do not convert to QVariant
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, datetime.datetime):
        return QDateTime(v)
    if isinstance(v, datetime.date):
        return QDate(v)
    return v


def write_rows(sink, fields: QgsFields, rows: list[dict], geometries=None):
    """Add dict rows (and optional QgsGeometry list) to a feature sink."""
    for i, row in enumerate(rows):
        feat = QgsFeature(fields)
        feat.setAttributes([_value(row.get(f.name())) for f in fields])
        if geometries is not None and geometries[i] is not None:
            feat.setGeometry(geometries[i])
        if not sink.addFeature(feat, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(f"could not write row {i + 1}: {sink.lastError()}")
    sink.flushBuffer()


def source_geometries(source):
    """QgsGeometry of each feature, in the source order."""
    return [f.geometry() for f in source.getFeatures(QgsFeatureRequest())]
