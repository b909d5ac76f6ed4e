"""Inventory outlines on a raster grid.

Inventories come in any CRS (RGI is EPSG:4326), imagery in UTM: outlines are transformed to
the raster's CRS before they are burnt into its grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Transformer
from rasterio import features
from shapely.ops import transform as shapely_transform


@dataclass
class Inventory:
    """Glacier outlines with ids, in one CRS."""
    ids: list
    geometries: list
    crs: str
    records: list | None = None

    def to_crs(self, crs) -> "Inventory":
        src, dst = CRS.from_user_input(self.crs), CRS.from_user_input(crs)
        if src == dst:
            return self
        tr = Transformer.from_crs(src, dst, always_xy=True)
        geoms = [None if g is None else shapely_transform(tr.transform, g) for g in self.geometries]
        return Inventory(self.ids, geoms, dst.to_wkt(), self.records)

    def near(self, crs, bounds) -> np.ndarray:
        """Indices of the outlines whose bounding box meets `bounds` (given in `crs`): a
        spatial index, so a chip costs its own glaciers, not the whole inventory."""
        from rasterio.warp import transform_bounds
        from shapely import STRtree, box
        if getattr(self, "_tree", None) is None:  # built once per inventory
            self._tree = STRtree([g if g is not None and not g.is_empty else None
                                  for g in self.geometries])
        if CRS.from_user_input(crs) != CRS.from_user_input(self.crs):
            bounds = transform_bounds(crs, self.crs, *bounds, densify_pts=21)
        return np.sort(self._tree.query(box(*bounds)))

    def subset(self, indices) -> "Inventory":
        """The outlines at `indices`, in the same CRS (ids and records follow)."""
        return Inventory([self.ids[k] for k in indices], [self.geometries[k] for k in indices],
                         self.crs, None if self.records is None else [self.records[k] for k in indices])

    @classmethod
    def from_layer(cls, layer, id_field: str | None = "id") -> "Inventory":
        """From a core.vector.VectorLayer; ids from `id_field` or the feature order."""
        if id_field and layer.records and id_field not in layer.records[0]:
            raise ValueError(f"ID_FIELD: the inventory has no field {id_field!r} (fields: "
                             f"{', '.join(layer.records[0])})")
        ids = [r[id_field] for r in layer.records] if id_field else list(range(1, len(layer.records) + 1))
        return cls(ids, layer.geometries, layer.crs, layer.records)


def rasterize_ids(inventory: Inventory, crs, transform, shape, all_touched=False) -> np.ndarray:
    """int32 raster: k + 1 where glacier k of the inventory is, 0 elsewhere. Only the outlines
    near the grid are transformed and burnt."""
    from rasterio.transform import array_bounds
    west, south, east, north = array_bounds(shape[0], shape[1], transform)
    near = inventory.near(crs, (west, south, east, north))
    local = inventory.subset(near).to_crs(crs).geometries
    shapes = [(g, int(k) + 1) for k, g in zip(near, local) if g is not None and not g.is_empty]
    if not shapes:
        return np.zeros(shape, np.int32)
    return features.rasterize(shapes, out_shape=shape, transform=transform, fill=0,
                              dtype="int32", all_touched=all_touched)


def lonlat_box(crs, bounds) -> str:
    """'w..e E, s..n N' of bounds in `crs`, for messages that say where two inputs lie."""
    from rasterio.warp import transform_bounds
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    return f"{w:.3f}..{e:.3f} E, {s:.3f}..{n:.3f} N"


def require_overlap(inventory: Inventory, extents, parameter: str) -> None:
    """Refuse, before any work, an inventory none of whose outlines lies on the rasters
    (`extents`: [(crs, bounds)]): their results would be empty, not wrong-looking zeros."""
    extents = list(extents)
    if any(len(inventory.near(crs, bounds)) for crs, bounds in extents):
        return
    shown = [g for g in inventory.geometries if g is not None and not g.is_empty]
    if not shown:
        raise ValueError("INVENTORY has no outline")
    from shapely import total_bounds
    crs, bounds = extents[0]
    more = f" (and {len(extents) - 1} more)" if len(extents) > 1 else ""
    raise ValueError(f"INVENTORY and {parameter} do not overlap: none of the inventory's {len(shown)} outlines "
                     f"lies on {parameter} ({parameter} covers {lonlat_box(crs, bounds)}{more}; INVENTORY "
                     f"{lonlat_box(inventory.crs, total_bounds(shown))}). "
                     "Give the inventory of the region the rasters show, or rasters of the inventory's region")
