"""Monthly gridded climate as the data centres deliver it, in the units the mass-balance model
expects (temperature deg C, precipitation mm per month, cell elevation m).

ERA5-Land and ERA5 monthly means come from the Copernicus CDS one variable per file (or a zip
of several), packed as int16 with scale_factor/add_offset/_FillValue, with the time axis
named `time` (classic NetCDF) or `valid_time` (NetCDF4 from the new CDS), and the geopotential
(and land-sea mask) in a separate invariant file; HISTALP ships one file with temp, prcp and
hgt. xarray with netCDF4 decodes the packing, fill values and both time conventions (GDAL's
read() would return the raw int16); the files are merged by variable name on one grid and
their common months. `tp` of ERA5(-Land) monthly means is metres per day: it becomes mm per
month with the month's own number of days.
"""
from __future__ import annotations

import calendar
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

G = 9.80665
# Our variable names -> common names in ERA5-Land / HISTALP files (the default mapping).
DEFAULT_VARIABLES = {"temperature": ("t2m", "temp", "tas"), "precipitation": ("tp", "prcp", "pr"),
                     "slhf": ("slhf",), "sshf": ("sshf",), "ssrd": ("ssrd",), "fal": ("fal",),
                     "str": ("str",)}
ELEVATION_VARIABLES = ("hgt", "z", "orog", "elevation")
LAND_VARIABLES = ("lsm",)


@dataclass
class MonthlyClimate:
    months: list                 # [(year, month)], one per time step
    lon: np.ndarray              # cell centres (nx,)
    lat: np.ndarray              # cell centres (ny,)
    variables: dict              # name -> (T, ny, nx) float32
    elevation: np.ndarray        # (ny, nx) m
    land: np.ndarray | None = field(default=None)  # (ny, nx) bool: land cells (ERA5's lsm >= 0.5)

    def index(self, year: int, month: int) -> int:
        return self._lookup[(year, month)]

    def __post_init__(self):
        self._lookup = {ym: i for i, ym in enumerate(self.months)}

    def has(self, year, month) -> bool:
        return (year, month) in self._lookup

    def cells(self, lon, lat, what: str = "a point"):
        """(rows, cols) of `cell` for arrays of points, at once: a point whose nearest cell
        has climate takes it (it is the nearest valid one); only the others search."""
        lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
        rows, cols = _nearest(self.lat, lat), _nearest(self.lon, lon)
        self.cell(float(lon[0]), float(lat[0]), what)  # computes the valid-cell grid once
        far = np.hypot((self.lon[cols] - lon) / self._step[0], (self.lat[rows] - lat) / self._step[1]) > 1.5
        for k in np.nonzero(~self._valid[rows, cols] | far)[0]:  # off the grid: cell() says so
            rows[k], cols[k] = self.cell(float(lon[k]), float(lat[k]), what)
        return rows, cols

    def cell(self, lon: float, lat: float, what: str = "a point") -> tuple[int, int]:
        """(row, col) of the nearest cell with climate (land, not NaN sea) within 1.5 cells of
        the point; a point off the grid, or near sea cells only, is an error: Icelandic stakes
        must not train on Alpine climate."""
        if not hasattr(self, "_valid"):  # once: cell sizes and where there is climate on land
            t = self.variables["temperature"]
            self._valid = np.isfinite(t).any(axis=0) & np.isfinite(self.elevation)
            if self.land is not None:
                self._valid &= self.land
            self._step = (float(np.median(np.abs(np.diff(self.lon)))) if self.lon.size > 1 else 1.0,
                          float(np.median(np.abs(np.diff(self.lat)))) if self.lat.size > 1 else 1.0)
        dlon, dlat = self._step
        # Only the 5 x 5 cells around the nearest one can lie within 1.5 cells: this runs
        # once per site, so no distance grid over the whole climate grid.
        r0, c0 = int(np.argmin(np.abs(self.lat - lat))), int(np.argmin(np.abs(self.lon - lon)))
        rows = np.arange(max(r0 - 2, 0), min(r0 + 3, self.lat.size))
        cols = np.arange(max(c0 - 2, 0), min(c0 + 3, self.lon.size))
        distance = np.hypot(((self.lon[cols] - lon) / dlon)[None, :], ((self.lat[rows] - lat) / dlat)[:, None])
        distance[~self._valid[np.ix_(rows, cols)]] = np.inf
        i, j = np.unravel_index(int(np.argmin(distance)), distance.shape)
        r, c = rows[i], cols[j]
        if not distance[i, j] <= 1.5:
            raise ValueError(
                f"CLIMATE has no land cell near {what} at {lon:.4f} E, {lat:.4f} N (grid {self.lon.min():.2f}-"
                f"{self.lon.max():.2f} E, {self.lat.min():.2f}-{self.lat.max():.2f} N, cells of "
                f"{dlon:.3g} x {dlat:.3g} deg): give climate that covers it")
        return int(r), int(c)


def _nearest(coord: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest coordinate for each x (coordinates ascending or descending)."""
    if coord.size == 1:
        return np.zeros(x.shape, int)
    order = np.argsort(coord, kind="stable")
    ordered = coord[order]
    j = np.clip(np.searchsorted(ordered, x), 1, ordered.size - 1)
    return order[np.where(x - ordered[j - 1] <= ordered[j] - x, j - 1, j)]


def climate_files(paths) -> list[Path]:
    """The NetCDF files behind CLIMATE: paths given, zips (as the CDS delivers several
    variables) unpacked once into the user's cache, keyed by the zip's path, size and time (a
    zip replaced at its path is unpacked anew), built under a temporary name and moved into
    place whole, so a failed unpacking leaves nothing that a rerun would take for done."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("CLIMATE: give at least one NetCDF file (or a zip of them)")
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"CLIMATE: {p} does not exist")
        if zipfile.is_zipfile(p):
            out += _unzipped(p)
        else:
            out.append(p)
    return out


def _unzipped(path: Path) -> list[Path]:
    import hashlib
    import json
    import shutil

    from ..identity import file_key
    from ..io import cache_dir
    key = hashlib.sha256(json.dumps(file_key(path)).encode()).hexdigest()[:16]
    root = cache_dir() / "climate"
    folder = root / f"{path.stem}-{key}"
    if not folder.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
        try:
            with zipfile.ZipFile(path) as z:
                members = [m for m in z.namelist() if m.lower().endswith((".nc", ".nc4")) and "/." not in m]
                if not members:
                    raise ValueError(f"CLIMATE: the zip {path} holds no NetCDF file")
                for m in members:
                    (partial / Path(m).name).write_bytes(z.read(m))
            try:
                partial.rename(folder)
            except OSError:  # another run unpacked it first
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return sorted(folder.iterdir())


# The first bytes of what users give as CLIMATE: NetCDF is classic (CDF) or NetCDF-4 (HDF5).
SIGNATURES = ((b"CDF", "NetCDF"), (b"\x89HDF", "NetCDF"), (b"GRIB", "GRIB"), (b"II*\x00", "GeoTIFF"),
              (b"MM\x00*", "GeoTIFF"), (b"PK", "zip archive"))


def _kind_of_file(path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "unreadable"
    return next((kind for magic, kind in SIGNATURES if head.startswith(magic)), "unknown")


def _open(path):
    import xarray as xr
    kind = _kind_of_file(path)
    if kind not in ("NetCDF", "unknown"):
        raise ValueError(f"CLIMATE: {Path(path).name} is a {kind} file, not NetCDF: give the ERA5-Land monthly "
                         "means as NetCDF, as the Copernicus Climate Data Store delivers them (a zip of them "
                         "is fine when downloaded as one)" if kind != "unreadable" else
                         f"CLIMATE: {path} cannot be read (missing, or no permission)")
    try:
        ds = xr.open_dataset(path, mask_and_scale=True, decode_times=True)
    except Exception as err:  # noqa: BLE001 (xarray's error advises installing backends: not the user's fix)
        reason = str(err).splitlines()[0] if kind == "NetCDF" else "it is not a NetCDF file"
        if "backends" in reason or "engine" in reason:
            reason = "it is not a NetCDF file"
        raise ValueError(f"CLIMATE: cannot read {Path(path).name} as NetCDF ({reason}): give the ERA5-Land "
                         "monthly means as NetCDF") from None
    renames = {k: v for k, v in (("valid_time", "time"), ("longitude", "lon"), ("latitude", "lat"),
                                  ("x", "lon"), ("y", "lat")) if k in ds.dims or k in ds.coords}
    ds = ds.rename(renames)
    if "expver" in ds.dims:
        ds = _collapse_expver(ds)
    for extra in ("number", "step", "surface", "height"):
        if extra in ds.dims:
            ds = ds.isel({extra: 0})
    for extra in ("expver", "number", "step", "surface", "height"):
        if extra in ds.coords:
            ds = ds.drop_vars(extra)
    if "lon" not in ds.coords or "lat" not in ds.coords:
        raise ValueError(f"CLIMATE: {path} has no longitude/latitude axes")
    if float(ds["lon"].max()) > 180.0:  # 0..360 as some tools write it: -180..180, ascending
        ds = ds.assign_coords(lon=((ds["lon"] + 180.0) % 360.0) - 180.0).sortby("lon")
    return ds


def _collapse_expver(ds):
    """ERA5 downloads that span the ERA5T boundary carry an `expver` dimension: each month is
    valid in one experiment (1: final release, 5: preliminary ERA5T) and NaN in the other.
    One value per month: the final release where it exists, else the preliminary one."""
    order = sorted(range(ds.sizes["expver"]), key=lambda i: int(str(ds["expver"].values[i]).strip() or 0)
                   if "expver" in ds.coords else i)
    out = ds.isel(expver=order[0], drop=True)
    for i in order[1:]:
        out = out.combine_first(ds.isel(expver=i, drop=True))
    return out


def _join_periods(pieces, name):
    """One variable delivered in several files (split by period, request limits): joined
    along time. A month in two files must hold the same values (an overlap), else refused."""
    import xarray as xr
    if len(pieces) == 1:
        return pieces[0][0]
    arrays = [da if "time" in da.dims else da.expand_dims("time") for da, _ in pieces]
    try:
        joined = xr.concat(arrays, dim="time", join="exact", coords="minimal", compat="override")
    except ValueError as err:  # grids that differ, even by a rounding
        raise ValueError(f"CLIMATE: the files holding {name} ({', '.join(f.name for _, f in pieces)}) are not on "
                         f"one grid ({err}): give files of one grid") from None
    months = _months(joined["time"].values)
    seen: dict = {}
    keep = []
    values = None
    for i, ym in enumerate(months):
        if ym in seen:
            values = np.asarray(joined.values) if values is None else values
            a, b = values[seen[ym]], values[i]
            if not np.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True):
                files = ", ".join(sorted({f.name for _, f in pieces}))
                raise ValueError(f"CLIMATE: {name} for {ym[0]}-{ym[1]:02d} differs between the files "
                                 f"({files}): give each month once")
            continue
        seen[ym] = i
        keep.append(i)
    order = sorted(keep, key=lambda i: months[i])
    return joined.isel(time=order)


def _months(times) -> list[tuple[int, int]]:
    out = []
    for t in np.asarray(times):
        if hasattr(t, "year"):  # cftime
            out.append((int(t.year), int(t.month)))
        else:
            d = np.datetime64(t, "M").astype(object)
            out.append((d.year, d.month))
    return out


def _convert(name, data, units, months):
    units = (units or "").strip()
    if name == "temperature" and units in ("K", "kelvin", "Kelvin"):
        return data - 273.15
    if name == "precipitation":
        days = np.array([calendar.monthrange(y, m)[1] for y, m in months], np.float32)[:, None, None]
        if units in ("m", "m of water equivalent"):  # ERA5(-Land) monthly means of daily totals
            return data * 1000.0 * days
        if units in ("mm/day", "mm day-1", "kg m-2 s-1", "kg m**-2 s**-1"):
            return data * days * (86400.0 if "s" in units.replace("mm", "") else 1.0)
    return data


# What monthly means can be on Earth, in the model's units: values outside are a unit that
# was not understood (t2m in deg C declared as K, tp in mm declared as m, ...), never climate.
PLAUSIBLE = {"temperature": (-90.0, 60.0, "deg C"), "precipitation": (0.0, 5000.0, "mm per month")}


def _plausible(ours, data, variable, units):
    if ours not in PLAUSIBLE:
        return
    lo, hi, unit = PLAUSIBLE[ours]
    finite = data[np.isfinite(data)]
    if not finite.size:
        raise ValueError(f"CLIMATE: {variable} holds no value (all missing)")
    low, high = float(finite.min()), float(finite.max())
    if low < lo - 1e-3 or high > hi:
        raise ValueError(f"CLIMATE: {variable} (units {units or 'not given'!r}) gives {ours} from {low:.4g} to "
                         f"{high:.4g} {unit}, outside {lo:g}..{hi:g}: its units are not what the file says. "
                         "ERA5(-Land) monthly means carry t2m in K and tp in m per day; fix the units "
                         "attribute or convert the file")


def read_climate(paths, variables: dict | None = None, elevation_variable: str | None = None) -> MonthlyClimate:
    """paths: one or several NetCDF files or zips, merged by variable name. variables: our
    name -> the file's variable name (missing ones are looked up in DEFAULT_VARIABLES);
    temperature and precipitation are required."""
    files = climate_files(paths)
    pieces: dict[str, list] = {}  # the file's variable name -> [(DataArray, path)], one per file
    for f in files:
        ds = _open(f)
        for name, da in ds.data_vars.items():
            if {"lat", "lon"} <= set(da.dims):
                pieces.setdefault(name, []).append((da, f))
    if not pieces:
        raise ValueError(f"CLIMATE: {', '.join(map(str, files))} hold no gridded variable")
    found: dict[str, tuple] = {}  # the file's variable name -> (DataArray, a path)
    for name, parts in pieces.items():
        grids = {(p[0]["lon"].size, p[0]["lat"].size) for p in parts}
        if len(grids) > 1:
            raise ValueError(f"CLIMATE: {name} comes on different grids in {', '.join(f.name for _, f in parts)}: "
                             "give files of one grid")
        found[name] = (_join_periods(parts, name), parts[0][1])
    mapping = {}
    for ours, candidates in DEFAULT_VARIABLES.items():
        chosen = (variables or {}).get(ours)
        if chosen:
            if chosen not in found:
                raise ValueError(f"CLIMATE_VARIABLES: {ours}={chosen} but CLIMATE has {', '.join(sorted(found))}")
            mapping[ours] = chosen
        else:
            hit = next((c for c in candidates if c in found), None)
            if hit:
                mapping[ours] = hit
    for required in ("temperature", "precipitation"):
        if required not in mapping:
            raise ValueError(f"CLIMATE has no {required} variable (variables: {', '.join(sorted(found))}); "
                             "add the file that holds it, or set CLIMATE_VARIABLES, e.g. "
                             "temperature=t2m,precipitation=tp")
    first = found[mapping["temperature"]][0]
    lon, lat = np.asarray(first["lon"], float), np.asarray(first["lat"], float)

    def on_grid(da, name):
        if da["lon"].size != lon.size or da["lat"].size != lat.size or \
                not np.allclose(da["lon"], lon, atol=1e-6) or not np.allclose(da["lat"], lat, atol=1e-6):
            raise ValueError(f"CLIMATE: {name} ({found[name][1].name}) is not on the grid of "
                             f"{mapping['temperature']}: give files of one grid")
        return da.transpose(..., "lat", "lon")

    timed = {ours: on_grid(found[var][0], var) for ours, var in mapping.items()}
    common = None
    for ours, da in timed.items():
        if "time" not in da.dims:
            raise ValueError(f"CLIMATE: {mapping[ours]} has no time axis (time or valid_time)")
        months = _months(da["time"].values)
        if len(set(months)) != len(months):
            raise ValueError(f"CLIMATE: {mapping[ours]} has several values for one month: give monthly means")
        common = set(months) if common is None else common & set(months)
    months = sorted(common)
    if not months:
        raise ValueError("CLIMATE: the variables share no month: give files of the same period")
    data = {}
    for ours, da in timed.items():
        index = {ym: i for i, ym in enumerate(_months(da["time"].values))}
        arr = np.asarray(da.values, np.float32)[[index[ym] for ym in months]]
        data[ours] = _convert(ours, arr, da.attrs.get("units", ""), months)
        _plausible(ours, data[ours], mapping[ours], da.attrs.get("units", ""))
    elev_var = elevation_variable or next((v for v in ELEVATION_VARIABLES if v in found), None)
    if elev_var is None or elev_var not in found:
        raise ValueError("CLIMATE has no cell elevation (hgt, orog, or the geopotential z of ERA5's "
                         "invariant file): add that file or set CLIMATE_ELEVATION")
    elev_da = on_grid(found[elev_var][0], elev_var)
    elev = np.asarray(elev_da.values, np.float32).reshape(-1, lat.size, lon.size)[0]
    units = elev_da.attrs.get("units", "").replace("**", "").replace(" ", "")
    if elev_var == "z" or "m2s-2" in units:
        elev = elev / G  # geopotential -> metres
    land = None
    land_var = next((v for v in LAND_VARIABLES if v in found), None)
    if land_var:
        land = np.asarray(on_grid(found[land_var][0], land_var).values, np.float32).reshape(-1, lat.size, lon.size)[0] >= 0.5
    return MonthlyClimate(months, lon, lat, data, elev, land)
