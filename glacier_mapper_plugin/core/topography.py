"""Topographic features for mass balance: elevation, slope and aspect at points and over a
glacier's DEM cells, from a DEM in any CRS (geographic DEMs get metric pixel spacing)."""
from __future__ import annotations

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio import features

from .mass_balance import Site


class Topography:
    def __init__(self, dem_path):
        with rasterio.open(dem_path) as src:
            self.dem = src.read(1, masked=True).astype(np.float64).filled(np.nan)
            self.transform, self.crs = src.transform, src.crs
        lat0 = None
        dx, dy = abs(self.transform.a), abs(self.transform.e)
        if self.crs.is_geographic:
            lat0 = self.transform.f + self.transform.e * self.dem.shape[0] / 2
            dx, dy = dx * 111320.0 * np.cos(np.radians(lat0)), dy * 110574.0
        gy, gx = np.gradient(self.dem, dy, dx)
        gn = -gy  # rows grow southwards
        self.slope = np.degrees(np.arctan(np.hypot(gx, gn)))
        self.aspect = (np.degrees(np.arctan2(-gx, -gn)) + 360.0) % 360.0
        self._to_dem = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        self._to_lonlat = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)

    def _rc(self, lon, lat):
        x, y = self._to_dem.transform(lon, lat)
        r, c = rasterio.transform.rowcol(self.transform, x, y)
        r = int(np.clip(r, 0, self.dem.shape[0] - 1))
        c = int(np.clip(c, 0, self.dem.shape[1] - 1))
        return r, c

    def __call__(self, lon, lat):
        """(slope, aspect) in degrees at a point."""
        r, c = self._rc(lon, lat)
        return float(self.slope[r, c]), float(self.aspect[r, c])

    def elevation(self, lon, lat):
        r, c = self._rc(lon, lat)
        return float(self.dem[r, c])

    def cells(self, outline, outline_crs, max_sites=None, seed=0):
        """(sites, (rows, cols)) of the DEM cells inside an outline (all, or a seeded sample)."""
        from shapely.ops import transform as shp_transform
        tr = Transformer.from_crs(outline_crs, self.crs, always_xy=True)
        geom = shp_transform(tr.transform, outline)
        mask = features.rasterize([(geom, 1)], out_shape=self.dem.shape, transform=self.transform,
                                  fill=0, dtype="uint8").astype(bool) & np.isfinite(self.dem)
        rows, cols = np.nonzero(mask)
        if max_sites and len(rows) > max_sites:
            pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_sites, replace=False))
            rows, cols = rows[pick], cols[pick]
        xs, ys = rasterio.transform.xy(self.transform, rows, cols)
        lons, lats = self._to_lonlat.transform(np.asarray(xs), np.asarray(ys))
        sites = [Site(float(lo), float(la), float(self.dem[r, c]), float(self.slope[r, c]),
                      float(self.aspect[r, c])) for lo, la, r, c in zip(lons, lats, rows, cols)]
        return sites, (rows, cols)
