"""Areas on the ellipsoid and local UTM zones: glacier areas must not depend on the CRS
the data happen to be in."""
from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Geod, Transformer
from shapely.ops import transform as shapely_transform

WGS84 = Geod(ellps="WGS84")


@lru_cache(maxsize=32)
def _to_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)


def to_lonlat(geom, crs: str):
    return shapely_transform(_to_lonlat(str(crs)).transform, geom)


def ellipsoidal_area_km2(geom, crs: str) -> float:
    """Geodesic area on WGS84 of a polygon given in any CRS."""
    if geom is None or geom.is_empty:
        return 0.0
    area, _ = WGS84.geometry_area_perimeter(to_lonlat(geom, crs))
    return abs(area) / 1e6


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone holding (lon, lat) (no Norway/Svalbard exceptions)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone
