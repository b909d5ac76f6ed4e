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
ID_COLUMNS = (("rgi_id", "RGI 7"), ("RGIId", "RGI 6"), ("glac_id", "GLIMS"), ("RGI_ID", "RGI"),
              ("RGI60_ID", "RGI 6"), ("GLIMSId", "GLIMS (RGI 6 link)"), ("glims_id", "GLIMS"),
              ("WGMS_ID", "WGMS"), ("id", "an id column"))
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
