"""Monthly gridded climate (ERA5-Land monthly means, HISTALP, any CF NetCDF) read through
GDAL's netCDF driver (the GDAL QGIS uses), in the units the mass-balance model expects:
temperature in deg C, precipitation in mm per month, the cell elevation in m."""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np
import rasterio

G = 9.80665
# Our variable names -> common names in ERA5-Land / HISTALP files (the default mapping).
DEFAULT_VARIABLES = {"temperature": ("t2m", "temp", "tas"), "precipitation": ("tp", "prcp", "pr"),
                     "slhf": ("slhf",), "sshf": ("sshf",), "ssrd": ("ssrd",), "fal": ("fal",),
                     "str": ("str",)}
ELEVATION_VARIABLES = ("hgt", "z", "orog", "elevation")


@dataclass
class MonthlyClimate:
    months: list                 # [(year, month)], one per time step
    lon: np.ndarray              # cell centres (nx,)
    lat: np.ndarray              # cell centres (ny,)
    variables: dict              # name -> (T, ny, nx) float32
    elevation: np.ndarray        # (ny, nx) m

    def index(self, year: int, month: int) -> int:
        return self._lookup[(year, month)]

    def __post_init__(self):
        self._lookup = {ym: i for i, ym in enumerate(self.months)}

    def has(self, year, month) -> bool:
        return (year, month) in self._lookup

    def cell(self, lon: float, lat: float, what: str = "a point") -> tuple[int, int]:
        """(row, col) of the nearest cell with climate (land, not NaN sea) within 1.5 cells of
        the point; a point off the grid, or near sea cells only, is an error: Icelandic stakes
        must not train on Alpine climate."""
        dlon = float(np.median(np.abs(np.diff(self.lon)))) if self.lon.size > 1 else 1.0
        dlat = float(np.median(np.abs(np.diff(self.lat)))) if self.lat.size > 1 else 1.0
        if not hasattr(self, "_valid"):
            t = self.variables["temperature"]
            self._valid = np.isfinite(t).any(axis=0) & np.isfinite(self.elevation)
        gx, gy = np.meshgrid((self.lon - lon) / dlon, (self.lat - lat) / dlat)
        distance = np.hypot(gx, gy)
        distance[~self._valid] = np.inf
        r, c = np.unravel_index(int(np.argmin(distance)), distance.shape)
        if not distance[r, c] <= 1.5:
            raise ValueError(
                f"CLIMATE has no land cell near {what} at {lon:.4f} E, {lat:.4f} N (grid {self.lon.min():.2f}-"
                f"{self.lon.max():.2f} E, {self.lat.min():.2f}-{self.lat.max():.2f} N, cells of "
                f"{dlon:.3g} x {dlat:.3g} deg): give climate that covers it")
        return int(r), int(c)


def _subdataset(path, var):
    return f'NETCDF:"{path}":{var}'


def _times(tags, count) -> list[tuple[int, int]]:
    units = next((v for k, v in tags.items() if k.endswith("time#units")), "")
    if "since" not in units:
        raise ValueError(f"climate file: time units {units!r} are not 'UNIT since DATE'")
    unit, origin = units.split(" since ")
    origin = dt.datetime.fromisoformat(origin.strip().replace(" ", "T")[:19])
    raw = tags.get("NETCDF_DIM_time_VALUES", "").strip("{}")
    values = [float(v) for v in raw.split(",") if v.strip()]
    if len(values) != count:
        raise ValueError("climate file: cannot read the time axis")
    step = {"days": dt.timedelta(days=1), "hours": dt.timedelta(hours=1),
            "seconds": dt.timedelta(seconds=1)}.get(unit.strip())
    if step is None:
        raise ValueError(f"climate file: time unit {unit!r} not supported")
    out = []
    for v in values:
        t = origin + step * v
        out.append((t.year, t.month))
    return out


def _convert(name, data, units, months):
    units = (units or "").strip()
    if name == "temperature" and units in ("K", "kelvin", "Kelvin"):
        return data - 273.15
    if name == "precipitation":
        days = np.array([calendar.monthrange(y, m)[1] for y, m in months], np.float32)[:, None, None]
        if units == "m":  # ERA5(-Land) monthly means of daily totals
            return data * 1000.0 * days
        if units in ("mm/day", "mm day-1", "kg m-2 s-1"):
            return data * days * (86400.0 if "s-1" in units else 1.0)
    return data


def read_climate(path, variables: dict | None = None, elevation_variable: str | None = None) -> MonthlyClimate:
    """variables: our name -> the file's variable name (missing ones are looked up in
    DEFAULT_VARIABLES); temperature and precipitation are required."""
    with rasterio.open(path) as ds:
        subs = {s.rsplit(":", 1)[-1]: s for s in ds.subdatasets}
    if not subs:
        raise ValueError(f"climate file {path} has no variables readable by GDAL's netCDF driver")
    mapping = {}
    for ours, candidates in DEFAULT_VARIABLES.items():
        chosen = (variables or {}).get(ours)
        if chosen:
            if chosen not in subs:
                raise ValueError(f"CLIMATE_VARIABLES: {ours}={chosen} but the file has "
                                 f"{', '.join(sorted(subs))}")
            mapping[ours] = chosen
        else:
            found = next((c for c in candidates if c in subs), None)
            if found:
                mapping[ours] = found
    for required in ("temperature", "precipitation"):
        if required not in mapping:
            raise ValueError(f"climate file has no {required} variable (variables: "
                             f"{', '.join(sorted(subs))}); set CLIMATE_VARIABLES, e.g. "
                             f"temperature=t2m,precipitation=tp")
    data, months, lon, lat = {}, None, None, None
    for ours, var in mapping.items():
        with rasterio.open(_subdataset(path, var)) as src:
            tags = src.tags()
            arr = src.read().astype(np.float32)
            if src.nodata is not None:
                arr[arr == src.nodata] = np.nan
            t = src.transform
            if months is None:
                months = _times(tags, src.count)
                lon = t.c + t.a * (np.arange(src.width) + 0.5)
                lat = t.f + t.e * (np.arange(src.height) + 0.5)
            units = tags.get(f"{var}#units", "")
            data[ours] = _convert(ours, arr, units, months)
    elev_var = elevation_variable or next((v for v in ELEVATION_VARIABLES if v in subs), None)
    if elev_var is None:
        raise ValueError("climate file has no cell elevation (hgt/z/orog): set CLIMATE_ELEVATION")
    with rasterio.open(_subdataset(path, elev_var)) as src:
        elev = src.read(1).astype(np.float32)
        if elev_var == "z" or "m2 s-2" in src.tags().get(f"{elev_var}#units", ""):
            elev = elev / G  # geopotential -> metres
    return MonthlyClimate(months, np.asarray(lon), np.asarray(lat), data, elev)
