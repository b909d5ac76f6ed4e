"""Topographic features for mass balance: elevation, slope and aspect at points and over a
glacier's DEM cells, from a DEM in any CRS (geographic DEMs get metric pixel spacing).

The DEM is read by window (the glacier's box plus one cell for the gradient), never whole:
a regional DEM of thousands of glaciers costs each glacier its own cells."""
from __future__ import annotations

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio import features
from rasterio.windows import Window

from .model import Site


class Topography:
    def __init__(self, dem_path):
        self._src = rasterio.open(dem_path)
        self.transform, self.crs = self._src.transform, self._src.crs
        self.shape = (self._src.height, self._src.width)
        self._dx, self._dy = abs(self.transform.a), abs(self.transform.e)
        self._to_dem = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        self._to_lonlat = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)

    def close(self):
        self._src.close()

    def window(self, r0: int, r1: int, c0: int, c1: int):
        """(elevation, slope, aspect) float64 of rows r0:r1, cols c0:c1, with the gradient of
        the whole DEM (one extra cell read on each side that has one)."""
        R0, R1 = max(r0 - 1, 0), min(r1 + 1, self.shape[0])
        C0, C1 = max(c0 - 1, 0), min(c1 + 1, self.shape[1])
        dem = self._src.read(1, window=Window(C0, R0, C1 - C0, R1 - R0), masked=True)
        dem = dem.astype(np.float64).filled(np.nan)
        if min(dem.shape) >= 2:
            dy, dx = self._spacing(R0, R1)
            gy, gx = np.gradient(dem, axis=0) / dy, np.gradient(dem, axis=1) / dx
        else:  # a one-cell-wide DEM has no slope
            gy = gx = np.zeros_like(dem)
        gn = -gy  # rows grow southwards
        slope = np.degrees(np.arctan(np.hypot(gx, gn)))
        aspect = (np.degrees(np.arctan2(-gx, -gn)) + 360.0) % 360.0
        inner = (slice(r0 - R0, r1 - R0), slice(c0 - C0, c1 - C0))
        return dem[inner], slope[inner], aspect[inner]

    def _spacing(self, r0: int, r1: int):
        """(dy, dx) in metres of rows r0:r1, as columns: constant on a projected DEM; on a
        geographic one the ellipsoid's metres per cell of each row's own latitude (a DEM
        spanning degrees of latitude must not take its centre's for every row)."""
        if not self.crs.is_geographic:
            return self._dy, self._dx
        from pyproj import Geod
        lat = self.transform.f + self.transform.e * (np.arange(r0, r1) + 0.5)
        geod = Geod(ellps="WGS84")
        zero = np.zeros_like(lat)
        dx = geod.inv(zero, lat, zero + self._dx, lat)[2]
        dy = geod.inv(zero, lat - self._dy / 2, zero, lat + self._dy / 2)[2]
        return dy[:, None], dx[:, None]

    def _rc(self, lon, lat):
        x, y = self._to_dem.transform(lon, lat)
        r, c = rasterio.transform.rowcol(self.transform, x, y)
        r = int(np.clip(r, 0, self.shape[0] - 1))
        c = int(np.clip(c, 0, self.shape[1] - 1))
        return r, c

    def __call__(self, lon, lat):
        """(slope, aspect) in degrees at a point."""
        r, c = self._rc(lon, lat)
        _, slope, aspect = self.window(r, r + 1, c, c + 1)
        return float(slope[0, 0]), float(aspect[0, 0])

    def elevation(self, lon, lat):
        r, c = self._rc(lon, lat)
        return float(self.window(r, r + 1, c, c + 1)[0][0, 0])

    def _in_dem_crs(self, outline, outline_crs):
        from shapely.ops import transform as shp_transform
        return shp_transform(Transformer.from_crs(outline_crs, self.crs, always_xy=True).transform, outline)

    def why_no_cell(self, outline, outline_crs) -> str:
        """Why an outline has no DEM cell: off the DEM, smaller than a cell, or over no data."""
        from shapely.geometry import box
        geom = self._in_dem_crs(outline, outline_crs)
        if geom.area == 0:
            return "the outline has no area (a line or a point): fix the outline in INVENTORY"
        if not geom.intersects(box(*self._src.bounds)):
            return "the outline lies outside DEM: give a DEM that covers the glacier"
        if geom.area < self._dx * self._dy:
            return (f"the outline ({geom.area:.0f} m2) is smaller than one DEM cell ({self._dx * self._dy:.0f} m2): "
                    "give a finer DEM, or leave the glacier out")
        return "DEM is no data under the whole outline: give a DEM with elevations there"

    def cells(self, outline, outline_crs, max_sites=None, seed=0):
        """(sites, (rows, cols)) of the DEM cells inside an outline (all, or a seeded sample)."""
        geom = self._in_dem_crs(outline, outline_crs)
        box = rasterio.windows.from_bounds(*geom.bounds, transform=self.transform)
        r0, c0 = max(int(np.floor(box.row_off)) - 1, 0), max(int(np.floor(box.col_off)) - 1, 0)
        r1 = min(int(np.ceil(box.row_off + box.height)) + 1, self.shape[0])
        c1 = min(int(np.ceil(box.col_off + box.width)) + 1, self.shape[1])
        if r1 <= r0 or c1 <= c0:  # the outline lies off the DEM
            return [], (np.zeros(0, int), np.zeros(0, int))
        dem, slope, aspect = self.window(r0, r1, c0, c1)
        mask = features.rasterize([(geom, 1)], out_shape=dem.shape, fill=0, dtype="uint8",
                                  transform=rasterio.windows.transform(Window(c0, r0, c1 - c0, r1 - r0),
                                                                       self.transform))
        rows, cols = np.nonzero(mask.astype(bool) & np.isfinite(dem))
        if max_sites and len(rows) > max_sites:
            pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_sites, replace=False))
            rows, cols = rows[pick], cols[pick]
        xs, ys = rasterio.transform.xy(self.transform, rows + r0, cols + c0)
        lons, lats = self._to_lonlat.transform(np.asarray(xs), np.asarray(ys))
        sites = [Site(float(lo), float(la), float(z), float(s), float(a)) for lo, la, z, s, a in
                 zip(np.atleast_1d(lons), np.atleast_1d(lats), dem[rows, cols], slope[rows, cols],
                     aspect[rows, cols])]
        return sites, (rows + r0, cols + c0)
