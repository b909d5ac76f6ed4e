"""WGMS Fluctuations-of-Glaciers tables as mass-balance observations: glacier-wide annual,
winter and summer balances (mbdata_*.csv) and elevation-band annual balances
(profile_*.csv). Dates follow the WGMS fixed-date hydrological year (1 Oct - 30 Sep,
winter to 30 Apr) when the tables give none."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

from .stakes import Observation, check_units


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
    check_units(out, units, "glacier-wide or band")
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
    check_units(out, units, "glacier-wide or band")
    return out


BALANCE_COLUMNS = {"annual": "ANNUAL_BALANCE", "winter": "WINTER_BALANCE", "summer": "SUMMER_BALANCE"}
WHOLE_GLACIER = 9999  # WGMS's LOWER_BOUND/UPPER_BOUND code for the whole glacier


def season_dates(year: int, period: str, hemi: str = "north") -> tuple[dt.date, dt.date]:
    """WGMS fixed dates of a glaciological year named by the year it ends in: north 1 Oct -
    30 Sep (winter to 30 Apr), south 1 Apr - 31 Mar (winter to 31 Oct)."""
    if hemi == "south":
        return {"annual": (dt.date(year - 1, 4, 1), dt.date(year, 3, 31)),
                "winter": (dt.date(year - 1, 4, 1), dt.date(year - 1, 10, 31)),
                "summer": (dt.date(year - 1, 11, 1), dt.date(year, 3, 31))}[period]
    return {"annual": (dt.date(year - 1, 10, 1), dt.date(year, 9, 30)),
            "winter": (dt.date(year - 1, 10, 1), dt.date(year, 4, 30)),
            "summer": (dt.date(year, 5, 1), dt.date(year, 9, 30))}[period]


def is_record_table(names) -> bool:
    """Glacier-wide or band records (WGMS mass-balance or profile layout), not stakes."""
    names = set(names)
    return "YEAR" in names and (bool(names & set(BALANCE_COLUMNS.values())) or
                                any(_f(n) is not None for n in names if n != "YEAR"))


def records_from_table(rows, units: str, glacier_of, place_of, glacier_field=None):
    """Observations from glacier-wide and elevation-band records: WGMS's mass-balance layout
    (YEAR, glacier id, ANNUAL/WINTER/SUMMER_BALANCE; LOWER_BOUND/UPPER_BOUND for bands, 9999
    for the whole glacier) or the wide profile layout (YEAR and one column per band-centre
    elevation). glacier_of(row) -> the glacier id in INVENTORY or None; place_of(glacier) ->
    (lon, lat, hemisphere). Returns (observations, {reason: [row numbers]})."""
    scale = 0.001 if units == "mm" else 1.0
    rows = list(rows)
    names = list(rows[0]) if rows else []
    centres = sorted(float(n) for n in names if n != "YEAR" and _f(n) is not None)
    half = np.median(np.diff(centres)) / 2 if len(centres) > 1 else 25.0
    out, problems = [], {}

    def problem(reason, n):
        problems.setdefault(reason, []).append(n)

    for n, r in enumerate(rows, start=1):
        year = _f(r.get("YEAR"))
        if year is None:
            problem("no YEAR", n)
            continue
        glacier = glacier_of(r)
        if glacier is None:
            problem("glacier not in INVENTORY", n)
            continue
        lon, lat, hemi = place_of(glacier)
        year = int(year)
        low, high = _f(r.get("LOWER_BOUND")), _f(r.get("UPPER_BOUND"))
        band = None if low is None or high is None or WHOLE_GLACIER in (low, high) else (low, high)
        found = False
        for period, column in BALANCE_COLUMNS.items():
            v = _f(r.get(column))
            if v is None:
                continue
            d0, d1 = season_dates(year, period, hemi)
            point_id = "glacier-wide" if band is None else f"band:{band[0]:g}:{band[1]:g}"
            out.append(Observation(glacier, point_id, lat, lon, float("nan") if band is None else (band[0] + band[1]) / 2,
                                   d0, d1, v * scale, period, {"row": n}))
            found = True
        for z in centres:  # the wide profile layout: annual balance per band centre
            v = _f(r.get(f"{z:g}") if f"{z:g}" in r else r.get(str(int(z))))
            if v is None:
                continue
            d0, d1 = season_dates(year, "annual", hemi)
            out.append(Observation(glacier, f"band:{z - half:g}:{z + half:g}", lat, lon, z, d0, d1, v * scale,
                                   "annual", {"row": n}))
            found = True
        if not found:
            problem("no balance value", n)
    check_units(out, units, "glacier-wide or band")
    return out, problems
