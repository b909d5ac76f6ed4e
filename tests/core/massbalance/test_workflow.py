"""The Mass Balance Machine's workflow: what a long-lived engine keeps open is keyed by the
files' content (path, size, time), so a file replaced at its path gives the new answer."""
import shutil

import pytest

from glacier_mapper_plugin.core.progress import Progress


def _train(folder, csv, model, n_estimators):
    from glacier_mapper_plugin.engine.steps import STEPS
    STEPS["train_mass_balance"](dict(OBSERVATIONS=str(csv), UNITS="mm", CLIMATE=[str(folder / "histalp_merged_hef.nc")],
                                     DEM=str(folder / "hef_srtm.tif"), N_ESTIMATORS=n_estimators, FOLDS=2,
                                     OUTPUT_MODEL=str(model)), Progress())
    return model


def test_a_model_replaced_at_its_path_is_read_anew(shared_data, tmp_path):
    """Hintereisferner (shared/data/oggm_hef): predictions with model A, then model B copied
    over A's file in the same process (the engine that QGIS keeps for 10 minutes): B's
    predictions, not A's."""
    from glacier_mapper_plugin.core.massbalance.workflow import predict_mbm
    from glacier_mapper_plugin.core.vector import read_layer
    from tests.core.massbalance.test_model import hef_band_csv
    folder = shared_data / "oggm_hef"
    csv = hef_band_csv(folder, tmp_path / "hef.csv")
    a = _train(folder, csv, tmp_path / "a.json", 10)
    b = _train(folder, csv, tmp_path / "b.json", 80)
    layer = read_layer(folder / "Hintereisferner_RGI6.shp")
    glaciers = [("HEF", layer.geometries[0], layer.crs)]

    def series(model, out):
        return predict_mbm(model, glaciers, [folder / "histalp_merged_hef.nc"], folder / "hef_srtm.tif",
                           2000, 2003, tmp_path / out)[0].rows

    used = tmp_path / "model.json"
    shutil.copy(a, used)
    first = series(used, "first")
    assert first == series(a, "a")
    shutil.copy(b, used)
    assert series(used, "second") == series(b, "b") != first


def _rewrite_dates(src, dst, change):
    import csv
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows[:-1]:  # the fixture's last row is its impossible date
            w.writerow(dict(r, FROM_DATE=change(r["FROM_DATE"]), TO_DATE=change(r["TO_DATE"])))
    return dst


def test_years_and_climate_that_cannot_meet_are_told_as_such(shared_data, tmp_path):
    """Dates written d/m/yy (year 98) and observations beyond the climate: each refused
    with what was found and what to do (it once read 'no observation period is covered')."""
    from tests.core.massbalance.test_model import hef_band_csv
    folder = shared_data / "oggm_hef"
    csv = hef_band_csv(folder, tmp_path / "hef.csv")
    short = _rewrite_dates(csv, tmp_path / "short.csv", lambda d: f"{int(d[6:8])}/{int(d[4:6])}/{d[2:4]}")
    with pytest.raises(ValueError, match=r"OBSERVATIONS: year\(s\) 2, 3, 80, 81, 82 are not four-digit years: write years in full"):
        _train(folder, short, tmp_path / "short.json", 10)
    old = _rewrite_dates(csv, tmp_path / "old.csv", lambda d: str(int(d[:4]) + 100) + d[4:])
    with pytest.raises(ValueError, match=r"CLIMATE covers .* but none of the \d+ observations \(208\d to 210\d\) "
                                         r"falls within it"):
        _train(folder, old, tmp_path / "old.json", 10)
    assert not list(tmp_path.glob("*.json"))
