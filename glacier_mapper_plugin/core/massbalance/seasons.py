"""Hydrological years and seasons by hemisphere. North: the glaciological year runs
1 October - 30 September, winter October-April, summer May-September; south (WGMS): 1 April -
31 March, winter April-October, summer November-March. The hemisphere comes from the
latitude unless the user says otherwise (HEMISPHERE)."""
from __future__ import annotations

HEMISPHERES = ("auto", "north", "south")
FIRST_MONTH = {"north": 10, "south": 4}
WINTER = {"north": (10, 11, 12, 1, 2, 3, 4), "south": (4, 5, 6, 7, 8, 9, 10)}


def hemisphere(lat: float, choice: str = "auto") -> str:
    if choice not in HEMISPHERES:
        raise ValueError(f"HEMISPHERE must be one of {', '.join(HEMISPHERES)}, not {choice!r}")
    return choice if choice != "auto" else ("north" if lat >= 0 else "south")


def hydro_year_months(year: int, hemi: str = "north") -> list[tuple[int, int]]:
    """The 12 (year, month) of hydrological year `year` (named by the year it ends in)."""
    first = FIRST_MONTH[hemi]
    return [(year - 1 if m >= first else year, m) for m in [*range(first, 13), *range(1, first)]]


def winter_months(hemi: str = "north") -> tuple[int, ...]:
    return WINTER[hemi]


def summer_months(hemi: str = "north") -> tuple[int, ...]:
    return tuple(m for m in range(1, 13) if m not in WINTER[hemi])


def hydro_month(month: int, hemi: str = "north") -> int:
    """0 for the first month of the hydrological year: a feature meaning the same season on
    either side of the equator."""
    return (month - FIRST_MONTH[hemi]) % 12
