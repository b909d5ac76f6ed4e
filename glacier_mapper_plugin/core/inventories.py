"""Glacier inventories as they are published: RGI 7.0, RGI 6.0 and GLIMS name their id and
date columns differently and write dates each in their own way. Found here, so that nobody
types ID_FIELD or DATE_FIELD for a published inventory, and every result carries the id that
links it back to its outline."""
from __future__ import annotations

import calendar
import datetime as dt
import math
import re

# (column, what publishes it), in the order they are looked for (case-insensitive).
ID_COLUMNS = (("glims_analysis", "GLIMS, every analysis"), ("rgi_id", "RGI 7"), ("RGIId", "RGI 6"),
              ("glac_id", "GLIMS"), ("RGI_ID", "RGI"), ("RGI60_ID", "RGI 6"), ("GLIMSId", "GLIMS (RGI 6 link)"),
              ("glims_id", "GLIMS"), ("WGMS_ID", "WGMS"), ("id", "an id column"))
DATE_COLUMNS = (("src_date", "RGI 7 / GLIMS source date"), ("BgnDate", "RGI 6"),
                ("anlys_time", "GLIMS analysis time"), ("date", "date"))
NAME_COLUMNS = ("glac_name", "Name", "NAME", "name")


def find_column(names, candidates):
    """(column as the file spells it, what publishes it) of the first candidate present, or
    None; candidates are (name, label) pairs or plain names."""
    lower = {str(n).lower(): n for n in names}
    for c in candidates:
        name, label = c if isinstance(c, tuple) else (c, c)
        if name.lower() in lower:
            return lower[name.lower()], label
    return None


def decimal_year(date: dt.date) -> float:
    start = dt.date(date.year, 1, 1)
    return date.year + (date - start).days / (dt.date(date.year + 1, 1, 1) - start).days


def inventory_date(value) -> tuple[float, str]:
    """(decimal year, how it was read) of an inventory's date attribute: a date or datetime,
    ISO text ('2003-07-30', '2003-07-30T00:00:00'), RGI 6's YYYYMMDD with 99 for an unknown
    month or day ('20030799': the middle of July 2003; '20039999': the middle of 2003), or a
    year alone (its middle). Unknown (-9999999, 99999999, empty): NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("nan"), "no date"
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return decimal_year(value), "date"
    text = str(value).strip()
    if not text:
        return float("nan"), "no date"
    try:
        return decimal_year(dt.date.fromisoformat(text[:10].replace("/", "-"))), "date"
    except ValueError:
        pass
    if re.fullmatch(r"\d{8}", text):  # RGI 6: YYYYMMDD, 99 for what is unknown
        year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
        if not 1900 <= year <= 2200:
            return float("nan"), "unknown date"
        if month == 99:
            return year + 0.5, "month and day unknown: the middle of the year"
        if not 1 <= month <= 12:
            return float("nan"), "unknown date"
        days = calendar.monthrange(year, month)[1]
        if day == 99 or not 1 <= day <= days:
            return decimal_year(dt.date(year, month, 1)) + days / 2 / (366 if calendar.isleap(year) else 365), \
                "day unknown: the middle of the month"
        return decimal_year(dt.date(year, month, day)), "date"
    try:
        year = float(text)
    except ValueError:
        return float("nan"), "unreadable date"
    if year.is_integer() and 1900 <= year <= 2200:  # RGI's -9999999 and 99999999 are never years
        return year + 0.5, "a year alone: its middle"
    return float("nan"), "unknown date"


# GLIMS as distributed (glims_polygons.shp): one row per polygon, its role in line_type. A
# glacier of one analysis is its glac_bound, debris-covered ice included (debris_cov lies
# on the glacier), minus its intrnl_rock polygons (nunataks: RGI makes them holes). Lakes,
# basins and the other line types are not glacier area.
GLIMS_GLACIER = ("glac_bound", "debris_cov")
GLIMS_ROCK = ("intrnl_rock",)
GLIMS_ANALYSIS_ID = "glims_analysis"  # the id column when every analysis is kept


def is_glims(records) -> bool:
    return bool(records) and any(str(r.get("line_type") or "") == "glac_bound" for r in records)


def glims_outlines(geometries, records, analysis: str | None = None):
    """One outline per GLIMS glacier and analysis (line types assembled as above), and of a
    glacier's several analyses: the newest (analysis empty or 'newest'), the one whose date
    is nearest `analysis` (YYYY-MM-DD; ties: the newer), or all ('all': each keeps its own
    feature, named glac_id@date in the column glims_analysis). Returns (geometries,
    records, lines for the log)."""
    from shapely import force_2d, unary_union
    choice = str(analysis or "newest").strip().lower()
    target = None
    if choice not in ("newest", "all"):
        try:
            target = decimal_year(dt.date.fromisoformat(choice[:10]))
        except ValueError:
            raise ValueError(f"GLIMS_ANALYSIS: {analysis!r} is not newest, all or a date YYYY-MM-DD") from None
    analyses: dict = {}
    ignored: dict = {}
    for g, r in zip(geometries, records):
        kind = str(r.get("line_type") or "")
        key = (str(r.get("glac_id")), str(r.get("anlys_id") if r.get("anlys_id") is not None else r.get("src_date")))
        a = analyses.setdefault(key, {"ice": [], "rock": [], "record": None})
        if g is None or g.is_empty:
            continue
        if kind in GLIMS_GLACIER:
            a["ice"].append(g)
            if kind == "glac_bound" and a["record"] is None:
                a["record"] = r
        elif kind in GLIMS_ROCK:
            a["rock"].append(g)
        else:
            ignored[kind] = ignored.get(kind, 0) + 1
    kept: dict = {}
    without_boundary = 0
    for (glacier, _), a in analyses.items():
        if a["record"] is None:  # rock or debris of an analysis whose boundary is not in the file
            without_boundary += 1
            continue
        date_column = find_column(list(a["record"]), DATE_COLUMNS)
        year = inventory_date(a["record"].get(date_column[0]))[0] if date_column else float("nan")
        outline = force_2d(unary_union(a["ice"]).difference(unary_union(a["rock"])) if a["rock"]
                           else unary_union(a["ice"]))
        kept.setdefault(glacier, []).append((year, outline, a["record"]))
    out_geoms, out_records, several = [], [], 0
    for glacier, options in kept.items():
        several += len(options) > 1
        options.sort(key=lambda o: -math.inf if math.isnan(o[0]) else o[0])
        if choice == "all":
            chosen = options
        elif target is None:
            chosen = options[-1:]
        else:
            chosen = [min(reversed(options), key=lambda o: math.inf if math.isnan(o[0]) else abs(o[0] - target))]
        for year, outline, record in chosen:
            record = dict(record)
            if choice == "all":
                record[GLIMS_ANALYSIS_ID] = f"{glacier}@{_date_text(year)}"
            out_geoms.append(outline)
            out_records.append(record)
    rocks = sum(len(a["rock"]) for a in analyses.values())
    debris = sum(r.get("line_type") == "debris_cov" for r in records)
    how = {"newest": "the newest", "all": "all"}.get(choice, f"the one nearest {choice[:10]}")
    report = [f"GLIMS: {len(out_geoms)} outline(s) of {len(kept)} glacier(s) from glac_bound minus {rocks} intrnl_rock, "
              f"{debris} debris_cov kept as glacier" + (f"; of glaciers with several analyses ({several}), {how}"
                                                        if several else "")]
    if ignored:
        report.append("GLIMS: not glacier area, left out: "
                      + ", ".join(f"{n} {kind or 'without line_type'}" for kind, n in sorted(ignored.items())))
    if without_boundary:
        report.append(f"GLIMS: {without_boundary} analysis(es) without a glac_bound polygon left out")
    return out_geoms, out_records, report


def _date_text(year: float) -> str:
    """A decimal year back to its day (YYYY-MM-DD) for ids; 'undated' for none."""
    if math.isnan(year):
        return "undated"
    start = dt.date(int(year), 1, 1)
    days = (dt.date(int(year) + 1, 1, 1) - start).days
    return (start + dt.timedelta(days=int(round((year - int(year)) * days)))).isoformat()
