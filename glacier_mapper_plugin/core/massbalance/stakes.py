"""Surface mass-balance observations (stakes, snow pits, elevation bands, glacier-wide) in
the WGMS / Mass Balance Machine layout, and the months each one covers.

An observation is a balance over a period; the Mass Balance Machine learns *monthly*
balances whose sum over an observation's months must match it, so the months matter more
than the season's name."""
from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .seasons import hemisphere

PERIOD_CODES = {"BA": "annual", "BW": "winter", "BS": "summer", "ANNUAL": "annual",
                "WINTER": "winter", "SUMMER": "summer"}
GLACIER_FIELDS = ("RGIId", "RGI_ID", "RGIID", "GLACIER_ID", "GLIMSId", "WGMS_ID", "NAME", "Name")


@dataclass
class Observation:
    glacier: str
    point_id: str
    lat: float
    lon: float
    elevation: float
    from_date: dt.date
    to_date: dt.date
    balance: float            # m w.e.
    period: str               # annual, winter, summer
    extra: dict = field(default_factory=dict)

    @property
    def year(self) -> int:
        """Hydrological year: the calendar year in which the period ends."""
        return self.to_date.year

    def months(self) -> list[tuple[int, int]]:
        """(year, month) pairs covered: a month counts when the period holds at least half of it."""
        out = []
        y, m = self.from_date.year, self.from_date.month
        while (y, m) <= (self.to_date.year, self.to_date.month):
            first = dt.date(y, m, 1)
            nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
            days = (nxt - first).days
            covered = (min(nxt, self.to_date + dt.timedelta(days=1)) - max(first, self.from_date)).days
            if covered * 2 >= days:
                out.append((y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


def slash_order(values) -> str:
    """'dmy' or 'mdy' for the a/b/YYYY dates among `values`, decided from the data (a first
    part above 12 is a day, a second part above 12 is a day); dates that read both ways, or
    a mix, are refused rather than guessed."""
    firsts, seconds = [], []
    for v in values:
        parts = str(v or "").strip().split("/")
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            firsts.append(int(parts[0]))
            seconds.append(int(parts[1]))
    if not firsts:
        return "dmy"
    day_first, month_first = max(firsts) > 12, max(seconds) > 12
    if day_first != month_first:
        return "dmy" if day_first else "mdy"
    raise ValueError("FROM_DATE/TO_DATE: dates such as "
                     f"{firsts[0]:02d}/{seconds[0]:02d}/YYYY read as day/month and as month/day "
                     + ("both" if day_first else "alike") + ": write them as YYYY-MM-DD or YYYYMMDD")


def parse_date(text, order: str = "dmy") -> dt.date | None:
    """YYYYMMDD, YYYY-MM-DD or a/b/YYYY in `order`; None for missing or impossible dates
    (WGMS uses 99 for unknown day/month)."""
    if text is None:
        return None
    s = str(text).strip()
    try:
        if "/" in s:
            a, b, y = s.split("/")
            d, m = (a, b) if order == "dmy" else (b, a)
            return dt.date(int(y), int(m), int(d))
        if "-" in s:
            return dt.date.fromisoformat(s[:10])
        if len(s) >= 8 and s[:8].isdigit():
            return dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None
    return None


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def observations_from_rows(rows, units: str = "m", glacier_field: str | None = None,
                           period_default: str | None = None) -> tuple[list[Observation], int]:
    """Observations from WGMS-layout records (dicts); returns (observations, rows dropped
    for unknown dates or balances)."""
    if units not in ("m", "mm"):
        raise ValueError(f"UNITS must be m or mm (w.e.), not {units!r}")
    scale = 0.001 if units == "mm" else 1.0
    rows = list(rows)
    if not rows:
        return [], 0
    keys = rows[0].keys()
    if glacier_field is None:
        glacier_field = next((f for f in GLACIER_FIELDS if f in keys), None)
    elif glacier_field not in keys:
        raise ValueError(f"GLACIER_FIELD: the observations have no column {glacier_field!r}")
    missing = {"POINT_LAT", "POINT_LON", "POINT_ELEVATION", "FROM_DATE", "TO_DATE",
               "POINT_BALANCE"} - set(keys)
    if missing:
        raise ValueError(f"observations lack the WGMS columns {', '.join(sorted(missing))}")
    order = slash_order([r.get(k) for r in rows for k in ("FROM_DATE", "TO_DATE")])
    out, dropped = [], 0
    for r in rows:
        d0, d1 = parse_date(r.get("FROM_DATE"), order), parse_date(r.get("TO_DATE"), order)
        b = _float(r.get("POINT_BALANCE"))
        if d0 is None or d1 is None or d1 <= d0 or b != b:
            dropped += 1
            continue
        code = str(r.get("PERIOD") or r.get("BALANCE_CODE") or period_default or "").upper()
        period = PERIOD_CODES.get(code) or _period_from_dates(d0, d1, _float(r.get("POINT_LAT")))
        out.append(Observation(str(r.get(glacier_field) or "glacier") if glacier_field else "glacier",
                               str(r.get("POINT_ID", "")), _float(r["POINT_LAT"]), _float(r["POINT_LON"]),
                               _float(r["POINT_ELEVATION"]), d0, d1, b * scale, period))
    check_units(out, units)
    return out, dropped


# The largest balance a year can bring, m w.e.: a stake on a low tongue (-15 m w.e. have been
# measured), and a glacier-wide or band mean (the most negative glacier-wide years are near
# -5 m w.e.; bands on a tongue reach -10 m w.e.).
MAX_BALANCE_M = {"point": 20.0, "glacier-wide or band": 12.0}


def check_units(observations, units: str, kind: str = "point") -> None:
    """Balances 1000 x off their stated unit are refused, for every kind of record: no stake
    gains or loses 20 m w.e. in a year, no glacier or band 12 m w.e., and a whole table of
    balances below 2 cm w.e. is not in metres."""
    if not observations:
        return
    b = np.abs([o.balance for o in observations])
    typical = float(np.percentile(b, 95))
    if typical > MAX_BALANCE_M[kind]:
        raise ValueError(f"OBSERVATIONS: {kind} balances up to {typical:.0f} m w.e. with UNITS={units}: no "
                         f"{'glacier point' if kind == 'point' else 'glacier or elevation band'} changes that much "
                         f"in a year. They look like mm w.e. ({typical / 1000:.2f} m): set UNITS=mm")
    if units == "mm" and typical < 0.02 and len(b) >= 5:
        raise ValueError(f"OBSERVATIONS: with UNITS=mm the {kind} balances are all below {typical * 1000:.0f} mm "
                         f"w.e.: they look like m w.e. ({typical * 1000:.2f} m read as mm): set UNITS=m")


def _period_from_dates(d0: dt.date, d1: dt.date, lat: float = 45.0) -> str:
    """Annual for a year-long record; otherwise winter when it starts in autumn (September-
    January in the north, March-July in the south), else summer."""
    if (d1 - d0).days > 300:
        return "annual"
    south = lat == lat and hemisphere(lat) == "south"  # an unknown latitude counts as north
    month = (d0.month + 5) % 12 + 1 if south else d0.month
    return "winter" if month in (9, 10, 11, 12, 1) else "summer"


def observations_from_stake_table(rows, units="m") -> tuple[list[Observation], int]:
    """The Iceland stake layout (stake, yr, d1, d2, d3, lat, lon, elevation,
    bw_/bs_/ba_stratigraphic): winter d1->d2, summer d2->d3, annual d1->d3."""
    scale = 0.001 if units == "mm" else 1.0
    out, dropped = [], 0
    for r in rows:
        d1, d2, d3 = (parse_date(r.get(k)) for k in ("d1", "d2", "d3"))
        glacier = str(r.get("GLIMSId") or r.get("Name") or "glacier")
        for period, a, b, key in (("winter", d1, d2, "bw_stratigraphic"),
                                  ("summer", d2, d3, "bs_stratigraphic"),
                                  ("annual", d1, d3, "ba_stratigraphic")):
            value = _float(r.get(key))
            if a is None or b is None or b <= a or value != value:
                dropped += 1
                continue
            out.append(Observation(glacier, str(r.get("stake")), _float(r.get("lat")), _float(r.get("lon")),
                                   _float(r.get("elevation")), a, b, value * scale, period))
    check_units(out, units)
    return out, dropped


def read_observations(path, units="m", glacier_field=None) -> tuple[list[Observation], int]:
    """A CSV in the WGMS/MBM point layout or the Iceland stake layout (detected)."""
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if rows and "POINT_BALANCE" not in rows[0] and "ba_stratigraphic" in rows[0]:
        return observations_from_stake_table(rows, units)
    return observations_from_rows(rows, units, glacier_field)
