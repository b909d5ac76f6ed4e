"""WGMS Fluctuations-of-Glaciers tables as mass-balance observations: glacier-wide annual,
winter and summer balances (mbdata_*.csv) and elevation-band annual balances
(profile_*.csv). Dates follow the WGMS fixed-date hydrological year (1 Oct - 30 Sep,
winter to 30 Apr) when the tables give none."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from .stakes import Observation


def _f(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def glacier_wide(path, glacier: str, lon: float, lat: float, units="mm") -> list[Observation]:
    scale = 0.001 if units == "mm" else 1.0
    out = []
    with Path(path).open(newline="") as f:
        for r in csv.DictReader(f):
            y = int(r["YEAR"])
            periods = (("winter", dt.date(y - 1, 10, 1), dt.date(y, 4, 30), r.get("WINTER_BALANCE")),
                       ("summer", dt.date(y, 5, 1), dt.date(y, 9, 30), r.get("SUMMER_BALANCE")),
                       ("annual", dt.date(y - 1, 10, 1), dt.date(y, 9, 30), r.get("ANNUAL_BALANCE")))
            for period, d0, d1, value in periods:
                v = _f(value)
                if v is not None:
                    out.append(Observation(glacier, "glacier-wide", lat, lon, float("nan"), d0, d1,
                                           v * scale, period))
    return out


def elevation_bands(path, glacier: str, lon: float, lat: float, units="mm") -> list[Observation]:
    """Annual balance per elevation band as point observations at the band's elevation."""
    scale = 0.001 if units == "mm" else 1.0
    out = []
    with Path(path).open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        elevations = [_f(h) for h in header[1:]]
        for row in reader:
            y = int(row[0])
            for z, v in zip(elevations, row[1:]):
                v = _f(v)
                if z is None or v is None:
                    continue
                out.append(Observation(glacier, f"band_{int(z)}", lat, lon, z, dt.date(y - 1, 10, 1),
                                       dt.date(y, 9, 30), v * scale, "annual"))
    return out
