"""The WGMS Fluctuations of Glaciers (FoG) database as WGMS releases it, read by detection.

- FoG 2025 and later (DOI-WGMS-FoG-2025-02b, DOI-WGMS-FoG-2026-02-10): a folder of lower-case
  tables under data/ (glacier.csv, mass_balance.csv, mass_balance_band.csv,
  mass_balance_point.csv, ...), balances in m w.e., each record with its survey dates
  (begin_date, midseason_date, end_date, ISO) and their uncertainties in days (*_unc).
- Earlier releases (DOI-WGMS-FoG-2021-05 and before): upper-case tables named
  WGMS-FoG-YYYY-MM-<code>-<NAME>.csv (A-GLACIER, AA-GLACIER-ID-LUT, EE-MASS-BALANCE with
  LOWER_BOUND/UPPER_BOUND, 9999 for the whole glacier, EEE-MASS-BALANCE-POINT), balances in
  mm w.e., glacier-wide and band records without dates (the WGMS fixed-date year applies).

Either arrives as the release's zip, its folder, or any one of its tables (its siblings are
read beside it). Records with survey dates less certain than MAX_DATE_UNCERTAINTY days are
left out as the Mass Balance Machine does (a date whose uncertainty is not stated is not
known to be certain)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .stakes import PERIOD_CODES, Observation, _float as _f, _period_from_dates, check_units, observations_from_rows, \
    parse_date
from .wgms import WHOLE_GLACIER, season_dates

NEW, OLD = "FoG 2025+", "FoG before 2025"
# Old release tables by the code in their names (WGMS-FoG-2021-05-EE-MASS-BALANCE.csv).
OLD_TABLES = {"a-glacier": "glacier", "aa-glacier-id-lut": "links", "ee-mass-balance": "mass_balance",
              "eee-mass-balance-point": "mass_balance_point"}
NEW_TABLES = ("glacier", "mass_balance", "mass_balance_band", "mass_balance_point")
SEASONS = ("annual", "winter", "summer")


@dataclass
class Glacier:
    wgms_id: str
    name: str
    lat: float
    lon: float
    links: tuple = ()  # RGI 7, RGI 6, RGI 5 and GLIMS ids as glacier.csv (or the id LUT) gives them


@dataclass
class Record:
    """A glacier-wide (band None) or elevation-band seasonal balance, m w.e."""
    wgms_id: str
    year: int
    period: str
    begin: dt.date | None
    end: dt.date | None
    balance: float
    band: tuple | None = None


@dataclass
class Release:
    layout: str
    units: str
    glaciers: dict = field(default_factory=dict)   # wgms id -> Glacier
    records: list = field(default_factory=list)    # Record
    points: list = field(default_factory=list)     # Observation, glacier = wgms id
    left_out: dict = field(default_factory=dict)   # reason -> count

    def leave_out(self, reason, n=1):
        if n:
            self.left_out[reason] = self.left_out.get(reason, 0) + n


def _tables(path: Path) -> tuple[dict, str]:
    """(table name -> a function returning its rows, layout)."""
    if path.is_file() and zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = {Path(n).name: (lambda n=n: _rows(archive.read(n))) for n in archive.namelist()
                   if n.lower().endswith(".csv")}
    else:
        folder = path.parent if path.is_file() else path
        if (folder / "data").is_dir():
            folder = folder / "data"
        members = {f.name: (lambda f=f: _rows(f.read_bytes())) for f in sorted(folder.glob("*.csv"))}
    new = {Path(n).stem: read for n, read in members.items() if Path(n).stem in NEW_TABLES}
    if "mass_balance" in new or "mass_balance_point" in new:
        return new, NEW
    old = {}
    for name, read in members.items():
        m = re.match(r"wgms-fog-\d{4}-\d{2}-(.+)$", Path(name).stem.lower())
        if m and m.group(1) in OLD_TABLES:
            old[OLD_TABLES[m.group(1)]] = read
    if "mass_balance" in old or "mass_balance_point" in old:
        return old, OLD
    raise ValueError(f"WGMS: {path} is not a WGMS FoG release (its zip, its folder or one of its tables: "
                     "data/mass_balance.csv ... since 2025, WGMS-FoG-YYYY-MM-EE-MASS-BALANCE.csv ... before)")


def _rows(data: bytes) -> list[dict]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:  # the releases before 2025 were Latin-1
        text = data.decode("latin-1")
    return list(csv.DictReader(io.StringIO(text)))


def _id(v) -> str:
    """WGMS ids as written in any table ('491', '491.0')."""
    x = _f(v)
    return str(int(x)) if x == x else str(v or "").strip()


def _links(*values) -> tuple:
    return tuple(i for v in values for i in re.split(r"[;,\s]+", str(v or "")) if i and i.lower() != "nan")


def read_release(path, max_date_uncertainty: float = 5.0) -> Release:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"WGMS: {path} does not exist")
    tables, layout = _tables(path)
    release = Release(layout, "m" if layout == NEW else "mm")
    (_new_release if layout == NEW else _old_release)(tables, release, max_date_uncertainty)
    try:
        check_units(release.points, release.units)
        for table in (False, True):  # glacier-wide and band tables each on its own
            check_units([Observation(r.wgms_id, "", 0, 0, 0, r.begin, r.end, r.balance, r.period)
                         for r in release.records if (r.band is not None) == table], release.units,
                        "glacier-wide or band")
    except ValueError as err:  # the layout fixes the unit: values 1000 x off it are not WGMS's
        raise ValueError(f"WGMS: {release.layout} tables are in {release.units} w.e., but "
                         + str(err).split(": ", 1)[1].split(". They look like")[0]
                         + ": these are not the tables as WGMS released them") from None
    return release


def _certain(row, keys, limit) -> bool:
    return all(_f(row.get(f"{k}_unc")) <= limit for k in keys)


def _new_release(tables, release, limit):
    for r in tables.get("glacier", list)():
        release.glaciers[_id(r.get("id"))] = Glacier(
            _id(r.get("id")), r.get("short_name") or r.get("names") or "", _f(r.get("latitude")),
            _f(r.get("longitude")), _links(r.get("rgi70_ids"), r.get("rgi60_ids"), r.get("rgi50_ids"), r.get("glims_id")))
    dates = {}
    for r in tables.get("mass_balance", list)():
        gid, year = _id(r.get("glacier_id")), int(_f(r.get("year")))
        d = {k: parse_date(r.get(f"{k}_date")) for k in ("begin", "midseason", "end")}
        dates[gid, year] = (d, r)
        for period in SEASONS:
            value = _f(r.get(f"{period}_balance"))
            if value == value:
                _season(release, gid, year, period, value, d, r, None, limit)
    for r in tables.get("mass_balance_band", list)():
        gid, year = _id(r.get("glacier_id")), int(_f(r.get("year")))
        d, survey = dates.get((gid, year), ({}, {}))
        band = (_f(r.get("lower_elevation")), _f(r.get("upper_elevation")))
        for period in SEASONS:
            value = _f(r.get(f"{period}_balance"))
            if value == value:
                _season(release, gid, year, period, value, d, survey, band, limit)
    for r in tables.get("mass_balance_point", list)():
        d0, d1 = parse_date(r.get("begin_date")), parse_date(r.get("end_date"))
        b = _f(r.get("balance"))
        if d0 is None or d1 is None or d1 <= d0 or b != b:
            release.leave_out("point: no dates or no balance")
            continue
        if not _certain(r, ("begin_date", "end_date"), limit):
            release.leave_out(f"point: date uncertainty above {limit:g} days or not stated")
            continue
        code = str(r.get("balance_code") or "").upper()
        lat = _f(r.get("latitude"))
        release.points.append(Observation(_id(r.get("glacier_id")), str(r.get("original_id") or r.get("id") or ""),
                                          lat, _f(r.get("longitude")), _f(r.get("elevation")), d0, d1, b,
                                          PERIOD_CODES.get(code) or _period_from_dates(d0, d1, lat),
                                          {"wgms_point": _id(r.get("id"))}))


def _season(release, gid, year, period, value, d, survey, band, limit):
    """One seasonal balance with its survey dates: winter begin->midseason, summer
    midseason->end, annual begin->end; without dates, the WGMS fixed dates."""
    ends = {"winter": ("begin", "midseason"), "summer": ("midseason", "end"), "annual": ("begin", "end")}[period]
    begin, end = (d.get(k) for k in ends)
    if begin is None and end is None:
        release.records.append(Record(gid, year, period, None, None, value, band))
        return
    if begin is None or end is None or end <= begin:
        release.leave_out(f"{period}: a survey date missing or out of order")
        return
    if not _certain(survey, [f"{k}_date" for k in ends], limit):
        release.leave_out(f"{'band' if band else 'glacier-wide'} {period}: date uncertainty above {limit:g} days "
                          "or not stated")
        return
    release.records.append(Record(gid, year, period, begin, end, value, band))


def _old_release(tables, release, limit):
    links = {_id(r.get("WGMS_ID")): _links(r.get("RGI60_ID"), r.get("RGI50_ID"), r.get("GLIMS_ID"))
             for r in tables.get("links", list)()}
    for r in tables.get("glacier", list)():
        gid = _id(r.get("WGMS_ID"))
        release.glaciers[gid] = Glacier(gid, r.get("NAME") or "", _f(r.get("LATITUDE")), _f(r.get("LONGITUDE")),
                                        links.get(gid, ()))
    for gid, ids in links.items():
        release.glaciers.setdefault(gid, Glacier(gid, "", float("nan"), float("nan"), ids))
    for r in tables.get("mass_balance", list)():
        gid, year = _id(r.get("WGMS_ID")), int(_f(r.get("YEAR")))
        low, high = _f(r.get("LOWER_BOUND")), _f(r.get("UPPER_BOUND"))
        band = None if math.isnan(low) or math.isnan(high) or WHOLE_GLACIER in (low, high) else (low, high)
        for period in SEASONS:
            value = _f(r.get(f"{period.upper()}_BALANCE"))
            if value == value:  # / 1000, not * 0.001: the same float as the m w.e. decimal
                release.records.append(Record(gid, year, period, None, None, value / 1000, band))
    rows = tables.get("mass_balance_point", list)()
    if rows:
        points, dropped = observations_from_rows(rows, "mm", "WGMS_ID")
        release.points = points
        release.leave_out("point: no dates or no balance", dropped)


def observations(release: Release, glacier_of, place_of, hemisphere_of) -> tuple[list, dict]:
    """Observations on inventory glaciers: glacier_of(wgms id) -> inventory id or None;
    place_of(inventory id) -> (lon, lat); hemisphere_of(lat) -> 'north'/'south'. Records
    without dates get the WGMS fixed dates of their hemisphere. Returns (observations,
    {wgms id: rows left out} for records of glaciers not in the inventory)."""
    out, unmatched = [], {}
    for r in release.records:
        glacier = glacier_of(r.wgms_id)
        if glacier is None:
            unmatched[r.wgms_id] = unmatched.get(r.wgms_id, 0) + 1
            continue
        lon, lat = place_of(glacier)
        begin, end = (r.begin, r.end) if r.begin else season_dates(r.year, r.period, hemisphere_of(lat))
        point_id = "glacier-wide" if r.band is None else f"band:{r.band[0]:g}:{r.band[1]:g}"
        out.append(Observation(glacier, point_id, lat, lon, float("nan") if r.band is None else sum(r.band) / 2,
                               begin, end, r.balance, r.period, {"wgms_id": r.wgms_id}))
    return out, unmatched


def _locator(inventory_ids, outlines_lonlat):
    """(lon, lat) -> the id of the inventory outline holding the position, or None."""
    from shapely import STRtree
    from shapely.geometry import Point
    ids = [str(i) for i in inventory_ids]
    tree = STRtree(outlines_lonlat)

    def locate(lon, lat):
        if lat != lat or lon != lon:
            return None
        hits = tree.query(Point(lon, lat), predicate="within")
        return ids[int(hits[0])] if len(hits) else None
    return locate


def match_glaciers(glaciers: dict, inventory_ids, outlines_lonlat) -> dict:
    """WGMS id -> (inventory id, how): by glacier.csv's RGI/GLIMS links where one names an
    inventory glacier, otherwise by the WGMS glacier's position inside an outline (lon/lat)."""
    known = {str(i) for i in inventory_ids}
    locate = _locator(inventory_ids, outlines_lonlat)
    out = {}
    for gid, g in glaciers.items():
        linked = [i for i in g.links if i in known]
        if linked:
            out[gid] = (linked[0], "link")
        elif (inside := locate(g.lon, g.lat)) is not None:
            out[gid] = (inside, "location")
    return out


def point_glaciers(points, matches: dict, inventory_ids, outlines_lonlat) -> list:
    """Each point on the inventory glacier its position lies in, else the one its WGMS
    glacier is linked to, else its WGMS id (a point needs no outline to be learnt from)."""
    locate = _locator(inventory_ids, outlines_lonlat)
    return [Observation(locate(o.lon, o.lat) or matches.get(o.glacier, (None,))[0] or f"WGMS {o.glacier}",
                        o.point_id, o.lat, o.lon, o.elevation, o.from_date, o.to_date, o.balance, o.period,
                        dict(o.extra, wgms_id=o.glacier)) for o in points]
