"""The WGMS FoG database as released, read by detection: FoG 2025+ (DOI-WGMS-FoG-2026-02-10
layout) from its folder, its zip or one table, and a release before 2025, hold the same
Hintereisferner records (shared/data/oggm_hef, OGGM's extract of FoG; tests/published.py
says how each table is laid out); Iceland's real stake table (shared/data/mbm_iceland,
MassBalanceMachine) as FoG 2026's point table gives the stake reader's observations."""
import csv

import pytest

from glacier_mapper_plugin.core.massbalance import fog
from glacier_mapper_plugin.core.massbalance.stakes import read_observations
from tests.published import FOG_POINT, _csv, fog_release, old_fog_release


def _seen(release):
    obs, unmatched = fog.observations(release, lambda gid: "RGI60-11.00897" if gid == "491" else None,
                                      lambda g: (10.77, 46.8), lambda lat: "north")
    assert not unmatched
    return [(o.glacier, o.point_id, o.period, o.year, tuple(o.months()), round(o.balance, 9), o.elevation == o.elevation)
            for o in obs]


def test_every_form_of_a_release_holds_the_same_records(shared_data, tmp_path):
    forms = {form: fog.read_release(fog_release(shared_data, tmp_path / form, form=form))
             for form in ("folder", "zip", "table")}
    old = fog.read_release(old_fog_release(shared_data, tmp_path / "old"))
    assert {r.layout for r in forms.values()} == {fog.NEW} and old.layout == fog.OLD
    assert forms["folder"].units == "m" and old.units == "mm"
    seen = _seen(forms["folder"])
    # 68 years of annual balances, 8 winters and summers since 2013, and the band balances
    assert sum(s[1] == "glacier-wide" and s[2] == "annual" for s in seen) == 68
    assert sum(s[1] == "glacier-wide" and s[2] == "winter" for s in seen) == 8
    assert sum(s[1].startswith("band:") for s in seen) > 1000
    for form in ("zip", "table"):
        assert _seen(forms[form]) == seen
    assert _seen(old) == seen
    assert forms["folder"].glaciers["491"].links == ("RGI2000-v7.0-G-11-03116", "RGI60-11.00897", "G010758E46800N")
    assert old.glaciers["491"].links == ("RGI60-11.00897", "G010758E46800N")


def test_glaciers_are_linked_by_rgi_ids_else_by_position(shared_data, tmp_path):
    from glacier_mapper_plugin.core.vector import read_layer
    rgi6 = read_layer(shared_data / "oggm_hef" / "Hintereisferner_RGI6.shp")
    rgi7 = read_layer(shared_data / "oggm_hef" / "rgi7g_hef.shp")
    iceland = read_layer(shared_data / "mbm_iceland" / "06_rgi62_Iceland.shp")
    linked = fog.read_release(fog_release(shared_data, tmp_path / "a"))
    unlinked = fog.read_release(fog_release(shared_data, tmp_path / "b", links=False))
    assert fog.match_glaciers(linked.glaciers, ["RGI60-11.00897"], rgi6.geometries) == {"491": ("RGI60-11.00897", "link")}
    assert fog.match_glaciers(linked.glaciers, ["RGI2000-v7.0-G-11-03116"], rgi7.geometries) == \
        {"491": ("RGI2000-v7.0-G-11-03116", "link")}
    assert fog.match_glaciers(unlinked.glaciers, ["RGI60-11.00897"], rgi6.geometries) == \
        {"491": ("RGI60-11.00897", "location")}
    ids = [r["RGIId"] for r in iceland.records]
    assert fog.match_glaciers(linked.glaciers, ids, iceland.geometries) == {}


def _iceland_as_fog_points(shared_data, path, uncertainty=lambda n: 0):
    """Iceland_Stake_WGMS.csv (the WGMS point layout before 2025, m w.e.) rewritten as FoG
    2026's mass_balance_point.csv: ISO dates, lower-case columns, date uncertainty per row."""
    with open(shared_data / "mbm_iceland" / "Iceland_Stake_WGMS.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    iso = lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}" if d else ""  # noqa: E731
    codes = {"BA": "annual", "BW": "winter", "BS": "summer"}
    _csv(path, FOG_POINT, [dict(country="IS", glacier_id="", original_id=r["POINT_ID"], id=n, year=r["YEAR"],
                                begin_date=iso(r["FROM_DATE"]), end_date=iso(r["TO_DATE"]),
                                begin_date_unc=uncertainty(n), end_date_unc=0, latitude=r["POINT_LAT"],
                                longitude=r["POINT_LON"], elevation=r["POINT_ELEVATION"], balance=r["POINT_BALANCE"],
                                balance_code=codes.get(r["BALANCE_CODE"], r["BALANCE_CODE"]))
                           for n, r in enumerate(rows)])
    return path


def test_points_of_fog_2026_are_the_stake_table(shared_data, tmp_path):
    table = _iceland_as_fog_points(shared_data, tmp_path / "data" / "mass_balance_point.csv")
    release = fog.read_release(table)
    theirs, dropped = read_observations(shared_data / "mbm_iceland" / "Iceland_Stake_WGMS.csv", units="m")
    key = lambda o: (o.point_id, o.from_date, o.to_date, o.period, round(o.balance, 9), o.lat, o.lon, o.elevation)  # noqa: E731
    assert len(release.points) == len(theirs) > 2600
    assert sorted(map(key, release.points)) == sorted(map(key, theirs))
    assert release.left_out.get("point: no dates or no balance", 0) == dropped


@pytest.mark.parametrize("limit, kept", [(5, "certain"), (15, "all")])
def test_uncertain_survey_dates_are_left_out_as_mbm_does(shared_data, tmp_path, limit, kept):
    """Every tenth stake's start date made 10 days uncertain, and every 25th's not stated:
    with the Mass Balance Machine's 5 days both are left out, with 15 days only the unstated."""
    unc = lambda n: "" if n % 25 == 0 else (10 if n % 10 == 0 else 2)  # noqa: E731
    baseline = fog.read_release(_iceland_as_fog_points(shared_data, tmp_path / "a" / "mass_balance_point.csv"))
    release = fog.read_release(_iceland_as_fog_points(shared_data, tmp_path / "b" / "mass_balance_point.csv", unc), limit)
    rows = {int(o.extra["wgms_point"]) for o in baseline.points}
    expected = {n for n in rows if n % 25 and (limit > 10 or n % 10)}
    assert {int(o.extra["wgms_point"]) for o in release.points} == expected
    assert release.left_out[f"point: date uncertainty above {limit} days or not stated"] == len(rows - expected)


def test_a_release_in_the_wrong_unit_or_not_a_release_is_refused(shared_data, tmp_path):
    root = fog_release(shared_data, tmp_path)
    path = root / "data" / "mass_balance.csv"
    rows = list(csv.DictReader(open(path, newline="")))
    from tests.published import FOG_MASS_BALANCE
    _csv(path, FOG_MASS_BALANCE, [dict(r, annual_balance=float(r["annual_balance"]) * 1000) for r in rows])
    with pytest.raises(ValueError, match="WGMS: FoG 2025\\+ tables are in m w.e."):
        fog.read_release(root)
    with pytest.raises(ValueError, match="not a WGMS FoG release"):
        fog.read_release(shared_data / "oggm_hef")


def test_survey_dates_of_fog_2025_are_the_periods(shared_data, tmp_path):
    """Where mass_balance.csv gives floating survey dates (here Hintereisferner's 2015 row
    rewritten with a 20 September start, a 6 May midseason and a 25 September end), winter is
    begin to midseason, summer midseason to end, annual begin to end; bands of that year take
    the same dates. Without dates a record keeps the WGMS fixed dates."""
    from tests.published import FOG_MASS_BALANCE
    root = fog_release(shared_data, tmp_path, years=(2014, 2015))
    path = root / "data" / "mass_balance.csv"
    rows = list(csv.DictReader(open(path, newline="")))
    rows = [dict(r, begin_date="2014-09-20", midseason_date="2015-05-06", end_date="2015-09-25")
            if r["year"] == "2015" else dict(r, begin_date="", midseason_date="", end_date="") for r in rows]
    _csv(path, FOG_MASS_BALANCE, rows)
    release = fog.read_release(root)
    obs, _ = fog.observations(release, lambda gid: "HEF", lambda g: (10.77, 46.8), lambda lat: "north")
    dates = {(o.year, o.point_id == "glacier-wide", o.period): (o.from_date, o.to_date) for o in obs}
    day = __import__("datetime").date
    assert dates[2015, True, "winter"] == (day(2014, 9, 20), day(2015, 5, 6))
    assert dates[2015, True, "summer"] == (day(2015, 5, 6), day(2015, 9, 25))
    assert dates[2015, True, "annual"] == dates[2015, False, "annual"] == (day(2014, 9, 20), day(2015, 9, 25))
    assert dates[2014, True, "annual"] == (day(2013, 10, 1), day(2014, 9, 30))
