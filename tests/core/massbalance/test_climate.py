"""Monthly climate as the CDS delivers it: the real ERA5-Land files of the Ötztal (OGGM's
sample data: classic NetCDF, int16 packed, time in hours since 1900, geopotential in an
invariant file) and synthetic files written here in the new CDS flavour (NetCDF4,
`valid_time`, expver/number coordinates, packed with _FillValue, two variables in a zip)."""
import calendar
import zipfile

import netCDF4
import numpy as np
import pytest

from glacier_mapper_plugin.core.massbalance.climate import read_climate

HEF = (10.7584, 46.8003)  # Hintereisferner
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def era5land(shared_data):
    f = shared_data / "oggm_era5land_oetztal"
    return [f / "sel_era5_land_monthly_t2m_1981-2018.nc", f / "sel_era5_land_monthly_prcp_1981-2018.nc",
            f / "sel_era5_land_invariant.nc"]


def test_real_era5_land_files_decode_to_physical_units(shared_data):
    files = era5land(shared_data)
    clim = read_climate(files)
    assert clim.months[0] == (1981, 1) and clim.months[-1] == (2018, 12) and len(clim.months) == 456
    r, c = clim.cell(*HEF)
    # Packed int16 decoded: the same value by hand from the raw numbers.
    with netCDF4.Dataset(files[0]) as nc:
        v = nc["t2m"]
        v.set_auto_maskandscale(False)
        raw = v[5, r, c]
        by_hand = raw * v.scale_factor + v.add_offset - 273.15
    assert clim.variables["temperature"][5, r, c] == pytest.approx(by_hand, abs=1e-3)
    t = clim.variables["temperature"][:, r, c]
    july = t[[i for i, (_, m) in enumerate(clim.months) if m == 7]]
    january = t[[i for i, (_, m) in enumerate(clim.months) if m == 1]]
    assert 0 < july.mean() < 15 and -20 < january.mean() < -3     # a cell at ~2700 m in the Alps
    p = clim.variables["precipitation"][:, r, c]
    assert 40 < p.mean() < 250 and (p >= 0).all()                  # mm per month
    with netCDF4.Dataset(files[1]) as nc:
        tp_july_1981 = float(nc["tp"][6, r, c])                    # m per day, monthly mean
    assert p[6] == pytest.approx(tp_july_1981 * 1000 * 31, rel=1e-4)  # 31 days in July
    assert 1500 < clim.elevation[r, c] < 3500                       # geopotential / g
    assert clim.land is not None and clim.land[r, c]


def _cds_netcdf4(path, name, values, months, units, scale, offset, fill=-32767):
    """A file as the new CDS writes it: NetCDF4, valid_time in seconds since 1970, packed int16,
    expver and number coordinates, latitude descending."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("valid_time", len(months))
        nc.createDimension("latitude", values.shape[1])
        nc.createDimension("longitude", values.shape[2])
        t = nc.createVariable("valid_time", "i8", ("valid_time",))
        t.units = "seconds since 1970-01-01"
        t.calendar = "proleptic_gregorian"
        import datetime as dt
        t[:] = [int((dt.datetime(y, m, 1) - dt.datetime(1970, 1, 1)).total_seconds()) for y, m in months]
        lat = nc.createVariable("latitude", "f8", ("latitude",))
        lat[:] = np.linspace(47.1, 46.6, values.shape[1])
        lon = nc.createVariable("longitude", "f8", ("longitude",))
        lon[:] = np.linspace(10.5, 11.1, values.shape[2])
        nc.createVariable("number", "i8", ())[...] = 0
        e = nc.createVariable("expver", str, ("valid_time",))
        for i in range(len(months)):
            e[i] = "0001"
        v = nc.createVariable(name, "i2", ("valid_time", "latitude", "longitude"), fill_value=fill)
        v.scale_factor, v.add_offset, v.units = scale, offset, units
        v.set_auto_maskandscale(True)
        v[:] = np.ma.masked_array(np.nan_to_num(values), mask=~np.isfinite(values))  # NaN -> _FillValue


def test_new_cds_flavour_zip_and_invariant(tmp_path):
    months = [(2019, m) for m in range(1, 13)] + [(2020, m) for m in range(1, 13)]
    rng = np.random.default_rng(1)
    t2m = 268 + 10 * rng.random((len(months), 4, 5))
    tp = 0.004 * rng.random((len(months), 4, 5))
    t2m[:, 0, 0] = np.nan  # a sea cell (ERA5-Land has none there)
    tp[:, 0, 0] = np.nan
    _cds_netcdf4(tmp_path / "t2m.nc", "t2m", t2m, months, "K", 0.0005, 270.0)
    _cds_netcdf4(tmp_path / "tp.nc", "tp", tp, months, "m", 1.5e-7, 0.0045)
    zipped = tmp_path / "era5land_monthly.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(tmp_path / "t2m.nc", "data_stream-moda_stepType-avgua.nc")
        z.write(tmp_path / "tp.nc", "data_stream-moda_stepType-avgad.nc")
    z_geo = 9.80665 * np.full((1, 4, 5), 2500.0)
    _cds_netcdf4(tmp_path / "geo.nc", "z", z_geo, [(2019, 1)], "m**2 s**-2", 0.1, 24000.0)
    clim = read_climate([zipped, tmp_path / "geo.nc"])
    assert clim.months == months
    np.testing.assert_allclose(clim.variables["temperature"][:, 2, 3], t2m[:, 2, 3] - 273.15, atol=0.001)
    days = np.array([calendar.monthrange(y, m)[1] for y, m in months])
    np.testing.assert_allclose(clim.variables["precipitation"][:, 2, 3], tp[:, 2, 3] * 1000 * days, rtol=1e-3, atol=0.01)
    assert clim.elevation[1, 1] == pytest.approx(2500.0, abs=0.2)
    assert np.isnan(clim.variables["temperature"][:, 0, 0]).all()   # _FillValue -> NaN
    r, c = clim.cell(10.5, 47.1)                                     # at the sea cell: its land neighbour
    assert (r, c) != (0, 0)


def test_missing_pieces_are_named(tmp_path, shared_data):
    files = era5land(shared_data)
    with pytest.raises(ValueError, match="CLIMATE has no precipitation variable"):
        read_climate([files[0], files[2]])
    with pytest.raises(ValueError, match="CLIMATE has no cell elevation .*invariant"):
        read_climate(files[:2])
    bad = tmp_path / "not.nc"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"cannot read not.nc as NetCDF \(it is not a NetCDF file\)") as err:
        read_climate([bad])
    assert "backend" not in str(err.value)  # not xarray's advice to install IO backends
    with pytest.raises(ValueError, match="CLIMATE: hef_srtm.tif is a GeoTIFF file, not NetCDF"):
        read_climate([shared_data / "oggm_hef" / "hef_srtm.tif"])


def test_histalp_single_file_still_works(shared_data):
    clim = read_climate(shared_data / "oggm_hef" / "histalp_merged_hef.nc")
    r, c = clim.cell(*HEF)
    assert clim.months[0][0] <= 1850 and 1800 < clim.elevation[r, c] < 3500
    assert -15 < float(np.nanmean(clim.variables["temperature"][:, r, c])) < 10


def _transplant(files, folder, shift, wrap=False):
    """The Ötztal files moved west by `shift` degrees (to negative longitudes, where 0..360
    and -180..180 differ), written in -180..180 or, with wrap, in 0..360 as some tools do."""
    import xarray as xr
    folder.mkdir()
    out = []
    for f in files:
        ds = xr.open_dataset(f)
        lon = ds["longitude"] - shift
        ds = ds.assign_coords(longitude=(lon % 360.0) if wrap else lon)
        out.append(folder / f.name)
        ds.to_netcdf(out[-1], engine="netcdf4")
    return out


def test_longitudes_0_360_read_like_minus_180_180(tmp_path, shared_data):
    files = era5land(shared_data)
    west = read_climate(_transplant(files, tmp_path / "west", 21.0))
    wrapped = read_climate(_transplant(files, tmp_path / "wrapped", 21.0, wrap=True))
    np.testing.assert_allclose(wrapped.lon, west.lon, atol=1e-4)  # float32 longitudes near 350
    assert west.lon.min() < -10 and west.lon.max() < 0
    for name in ("temperature", "precipitation"):
        np.testing.assert_array_equal(wrapped.variables[name], west.variables[name])
    at = (HEF[0] - 21.0, HEF[1])
    assert wrapped.cell(*at) == west.cell(*at)


def test_expver_takes_the_final_release_over_the_preliminary(tmp_path, shared_data):
    """A month valid in expver 1 (final) and 5 (ERA5T): the final value; a month valid only in
    5: the preliminary value; never NaN."""
    import xarray as xr
    ds = xr.open_dataset(era5land(shared_data)[0]).isel(time=slice(0, 4))
    final = ds.copy(deep=True)
    final["t2m"][3] = np.nan                                    # month 4 not yet final
    prelim = ds.copy(deep=True)
    prelim["t2m"][:] = prelim["t2m"] + 0.5                       # ERA5T differs a little
    both = xr.concat([final, prelim], dim=xr.DataArray([1, 5], dims="expver", name="expver"))
    both.to_netcdf(tmp_path / "t2m.nc", engine="netcdf4")
    files = era5land(shared_data)
    clim = read_climate([tmp_path / "t2m.nc", files[1], files[2]])
    ref = read_climate(files)
    t, r = clim.variables["temperature"], ref.variables["temperature"]
    assert clim.months == ref.months[:4]
    np.testing.assert_allclose(t[:3], r[:3], atol=1e-4)
    np.testing.assert_allclose(t[3], r[3] + 0.5, atol=1e-3)  # repacked as int16: its quantum


@pytest.mark.parametrize("variable, factor, units, match", [
    ("t2m", 1.0, "degC", "t2m .*temperature from .* deg C, outside -90..60"),        # K declared as deg C
    ("tp", 1000.0, "m", "tp .*precipitation from .* mm per month, outside 0..5000"),  # mm declared as m
])
def test_units_that_do_not_match_the_values_are_refused(tmp_path, shared_data, variable, factor, units, match):
    import xarray as xr
    files = era5land(shared_data)
    index = 0 if variable == "t2m" else 1
    ds = xr.open_dataset(files[index])
    ds[variable] = ds[variable] * factor
    ds[variable].attrs["units"] = units
    ds[variable].encoding = {}
    ds.to_netcdf(tmp_path / "bad.nc", engine="netcdf4")
    mixed = list(files)
    mixed[index] = tmp_path / "bad.nc"
    with pytest.raises(ValueError, match="CLIMATE: " + match):
        read_climate(mixed)


def test_a_zip_replaced_at_its_path_is_unpacked_anew(tmp_path, monkeypatch):
    """CDS zips unpack into the user's cache keyed by the zip's path, size and time; a new
    download at the same path gives its own values, and nothing partial is left behind."""
    import os
    monkeypatch.setenv("GLACIER_MAPPER_CACHE", str(tmp_path / "cache"))
    months = [(2019, m) for m in range(1, 13)]
    rng = np.random.default_rng(2)
    z_geo = 9.80665 * np.full((1, 4, 5), 2500.0)
    _cds_netcdf4(tmp_path / "geo.nc", "z", z_geo, [(2019, 1)], "m**2 s**-2", 0.1, 24000.0)
    zipped = tmp_path / "era5land_monthly.zip"
    temps = []
    for k in range(2):
        t2m = 265 + 10 * rng.random((len(months), 4, 5))
        tp = 0.004 * rng.random((len(months), 4, 5))
        _cds_netcdf4(tmp_path / "t2m.nc", "t2m", t2m, months, "K", 0.0005, 270.0)
        _cds_netcdf4(tmp_path / "tp.nc", "tp", tp, months, "m", 1.5e-7, 0.0045)
        with zipfile.ZipFile(zipped, "w") as z:
            z.write(tmp_path / "t2m.nc", "data_stream-moda_stepType-avgua.nc")
            z.write(tmp_path / "tp.nc", "data_stream-moda_stepType-avgad.nc")
        os.utime(zipped, ns=(10 ** 18 + k, 10 ** 18 + k))  # two downloads, two times
        clim = read_climate([zipped, tmp_path / "geo.nc"])
        np.testing.assert_allclose(clim.variables["temperature"][:, 2, 3], t2m[:, 2, 3] - 273.15, atol=0.001)
        temps.append(clim.variables["temperature"][0, 2, 3])
    assert temps[0] != temps[1]
    cached = sorted(p.name for p in (tmp_path / "cache" / "climate").iterdir())
    assert len(cached) == 2 and not [n for n in cached if n.startswith(".")]


def test_without_netcdf4_as_on_macos_the_same_climate_is_read(shared_data, tmp_path):
    """macOS's engine has no netCDF4 (no wheel for macOS 13 arm64): xarray reads classic NetCDF
    with scipy and NetCDF4 with h5netcdf. The real ERA5-Land files, as delivered (classic) and
    as the new CDS splits them (NetCDF4, expver, valid_time), read in a process where netCDF4
    cannot be imported, give the same climate as with netCDF4."""
    import subprocess
    import sys

    from tests.engine.steps.test_massbalance import split_as_the_cds_delivers
    files = era5land(shared_data)
    split = split_as_the_cds_delivers(files, tmp_path / "split")
    for name, paths in (("classic", files), ("netcdf4", split)):
        ours = read_climate(paths)
        out = tmp_path / f"{name}.npz"
        code = ("import sys; sys.modules['netCDF4'] = None; import numpy as np; "
                "from glacier_mapper_plugin.core.massbalance.climate import read_climate; "
                f"c = read_climate({[str(p) for p in paths]!r}); "
                f"np.savez({str(out)!r}, t=c.variables['temperature'], p=c.variables['precipitation'], "
                "z=c.elevation, months=np.array(c.months))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-2000:]
        theirs = np.load(out)
        assert [tuple(m) for m in theirs["months"]] == ours.months, name
        np.testing.assert_allclose(theirs["t"], ours.variables["temperature"], rtol=0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(theirs["p"], ours.variables["precipitation"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(theirs["z"], ours.elevation, rtol=1e-6, err_msg=name)
