"""Training and applying the Mass Balance Machine end to end: observations + climate + DEM
-> cross-validated model file; model + inventory + climate + DEM -> gridded annual, winter
and summer balances and glacier-wide series."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio

from .climate import read_climate
from ..io import GTIFF_PROFILE, atomic_output, remove_partials
from .model import (FEATURES, MBMHeader, MBMOptions, aggregate, cv_splits, design, fit, load_mbm,
                           metrics_by_period, observation_sites, predict_rows, save_mbm, scores,
                           site_month_features)
from ..identity import file_names
from .seasons import hemisphere, hydro_year_months, summer_months, winter_months
from ..progress import Progress
from .topography import Topography


@dataclass
class TrainedMBM:
    model: Path
    metrics: dict
    cv_kind: str
    n_observations: int


def train_mbm(observations, climate_path, dem_path, output_model, options: MBMOptions | None = None,
              folds: int = 5, climate_variables=None, climate_elevation=None,
              progress: Progress | None = None, dropped: int = 0, glacier_sites: dict | None = None) -> TrainedMBM:
    """glacier_sites: glacier id -> [Site] (DEM cells of its outline) for glacier-wide and
    elevation-band observations."""
    options = options or MBMOptions()
    progress = progress or Progress()
    if not observations:
        raise ValueError("OBSERVATIONS: no usable observation (check dates and balances)")
    short = sorted({o.year for o in observations if o.year < 1000})
    if short:  # 98 for 1998: read as the year 98, it would only miss every climate month
        raise ValueError(f"OBSERVATIONS: year(s) {', '.join(map(str, short[:5]))} are not four-digit years: "
                         "write years in full (1998, not 98)")
    climate = read_climate(climate_path, climate_variables, climate_elevation)
    topo = Topography(dem_path) if dem_path else None
    usable = [o for o in observations if o.months() and all(climate.has(*ym) for ym in o.months())]
    if not usable:
        years = sorted(o.year for o in observations)
        raise ValueError(f"CLIMATE covers {climate.months[0]} to {climate.months[-1]}, but none of the "
                         f"{len(observations)} observations ({years[0]} to {years[-1]}) falls within it: give "
                         "climate files for the observation years (each period needs all its months)")
    if len(usable) < len(observations):
        progress.warning(f"{len(observations) - len(usable)} observations fall outside the climate "
                         f"data ({climate.months[0]} to {climate.months[-1]}) and are left out")
    placed = [o for o in usable if observation_sites(o, glacier_sites, topo)]
    if len(placed) < len(usable):
        kept = {id(o) for o in placed}
        lost = [o for o in usable if id(o) not in kept]
        named = ", ".join(f"{o.glacier} {o.point_id.replace('band:', 'band ')} {o.year}"
                          + (f" (row {o.extra['row']})" if "row" in o.extra else "") for o in lost[:20])
        progress.warning(f"{len(lost)} glacier-wide or band observations have no DEM cell (glacier not in "
                         f"INVENTORY, or no cell in the band) and are left out: {named}"
                         + (" ..." if len(lost) > 20 else ""))
    usable = placed
    if not usable:
        raise ValueError("no observation could be placed on a DEM cell: check that DEM covers INVENTORY's "
                         "glaciers and the stakes' positions")
    # ERA5-Land's radiation and heat fluxes and albedo join the features when the file has them.
    extra = [v for v in ("slhf", "sshf", "ssrd", "fal", "str") if v in climate.variables]
    splits, kind = cv_splits(usable, folds)
    pred = np.full(len(usable), np.nan)
    for f, test_idx in enumerate(splits):
        progress.check()
        test_set = set(test_idx)
        train = [o for i, o in enumerate(usable) if i not in test_set]
        d_train = design(train, climate, options, topo, glacier_sites, extra_vars=extra)
        d_test = design([usable[i] for i in test_idx], climate, options, topo, glacier_sites, extra_vars=extra)
        booster = fit(d_train, options, progress.sub(f / (len(splits) + 1), (f + 1) / (len(splits) + 1)))
        # Predictions go back to the observations they belong to (by position in the fold),
        # never by order alone.
        got = aggregate(predict_rows(booster, d_test.x), d_test.group, d_test.weight, len(d_test.target))
        pred[np.asarray(test_idx)[d_test.positions]] = got
        progress.info(f"fold {f + 1}/{len(splits)} (leave-{kind}-out): {len(test_idx)} observations")
    metrics = metrics_by_period(pred, usable)
    if kind == "glaciers":  # how well each left-out glacier is predicted
        for g in sorted({o.glacier for o in usable}):
            idx = [i for i, o in enumerate(usable) if o.glacier == g and np.isfinite(pred[i])]
            if idx:
                metrics[f"glacier {g}"] = scores([pred[i] for i in idx], [usable[i].balance for i in idx])
    for key, m in metrics.items():
        progress.info(f"{key}: RMSE {m['rmse']:.3f}, bias {m['bias']:+.3f}, R2 {m['r2']:.2f} m w.e. (n={m['n']})")
    d_all = design(usable, climate, options, topo, glacier_sites, extra_vars=extra)
    booster = fit(d_all, options, progress.sub(len(splits) / (len(splits) + 1), 1.0))
    header = MBMHeader(options=asdict(options), features=list(FEATURES) + extra, extra_variables=extra,
                       metrics=dict(metrics, cross_validation=f"leave-{kind}-out, {len(splits)} folds"),
                       training=dict(observations=len(usable), dropped_rows=dropped,
                                     glaciers=sorted({o.glacier for o in usable}),
                                     years=[min(o.year for o in usable), max(o.year for o in usable)],
                                     climate=", ".join(Path(c).name for c in ([climate_path] if isinstance(climate_path, (str, Path)) else climate_path)),
                                     dem=Path(dem_path).name if dem_path else None))
    save_mbm(output_model, booster, header)
    return TrainedMBM(Path(output_model), metrics, kind, len(usable))


@dataclass
class GlacierSeries:
    glacier: object
    rows: list          # [{year, ba, bw, bs}]
    raster: Path | None
    profile: list       # [(elevation, mean annual balance)]


SITES_PER_CHUNK = 4096  # DEM cells predicted together: ~30 MB of features for 20 years


def season_index(hemi: str) -> tuple[list[int], list[int]]:
    """Positions of the winter and summer months within a hydrological year's 12 months."""
    order = [m for _, m in hydro_year_months(2000, hemi)]
    return ([i for i, m in enumerate(order) if m in winter_months(hemi)],
            [i for i, m in enumerate(order) if m in summer_months(hemi)])


@dataclass(frozen=True)
class PredictionInputs:
    """What every glacier's prediction reads; opened once per process (a Dask worker runs
    many glaciers) and sent to a cluster once."""
    model: str
    climate: tuple
    dem: str
    variables: tuple = ()
    elevation: str | None = None   # the climate's elevation variable (a name, not a file)
    hemisphere: str = "auto"
    files: tuple = ()              # file_key of every file: one replaced at its path is reread

    def open(self):
        """(booster, header, options, climate, topography), the last ones of this process."""
        with _OPEN_LOCK:
            if _OPEN.get("key") != self:
                _OPEN.clear()
                booster, header = load_mbm(self.model)
                options = MBMOptions(**header.options)
                options.hemisphere = self.hemisphere
                climate = read_climate(list(self.climate), dict(self.variables) or None, self.elevation)
                _OPEN.update(key=self, value=(booster, header, options, climate, Topography(self.dem)))
            return _OPEN["value"]


_OPEN: dict = {}
_OPEN_LOCK = threading.Lock()


def predict_mbm(model_path, glaciers, climate_path, dem_path, start_year: int, end_year: int,
                output_folder, climate_variables=None, climate_elevation=None,
                progress: Progress | None = None, hemisphere_choice: str = "auto", pool=None) -> list[GlacierSeries]:
    """glaciers: [(id, geometry, crs)]. Per glacier a raster with Ba, Bw, Bs per year on the
    DEM grid (cells inside the outline) and the glacier-wide series; each glacier a piece of
    `pool` (a task on a cluster)."""
    from ..cluster import LocalPool
    progress = progress or Progress()
    pool = pool or LocalPool()
    if end_year < start_year:
        raise ValueError(f"END_YEAR ({end_year}) is before START_YEAR ({start_year})")
    climate_paths = [climate_path] if isinstance(climate_path, (str, Path)) else list(climate_path)
    from ..identity import file_key
    inputs = PredictionInputs(str(Path(model_path).resolve()), tuple(str(Path(c).resolve()) for c in climate_paths),
                              str(Path(dem_path).resolve()), tuple(sorted((climate_variables or {}).items())),
                              climate_elevation or None, hemisphere_choice,
                              tuple(tuple(file_key(f)) for f in (model_path, *climate_paths, dem_path)))
    _, header, _, climate, _ = inputs.open()
    hemis = {}
    for gid, geom, crs in glaciers:  # each glacier's own hydrological year
        if geom is not None and not geom.is_empty:
            from ..geodesy import to_lonlat
            hemis[str(gid)] = hemisphere(to_lonlat(geom.centroid, crs).y, hemisphere_choice)
    need = set(hemis.values()) or {"north"}
    years = [y for y in range(start_year, end_year + 1)
             if all(climate.has(*ym) for h in need for ym in hydro_year_months(y, h))]
    if not years:
        raise ValueError(f"CLIMATE covers none of the hydrological years {start_year}-{end_year} "
                         f"(it spans {climate.months[0]} to {climate.months[-1]})")
    missing = sorted(set(range(start_year, end_year + 1)) - set(years))
    if missing:  # never drop requested years silently
        raise ValueError(f"CLIMATE does not cover the hydrological year(s) {', '.join(map(str, missing))} "
                         f"(it spans {climate.months[0]} to {climate.months[-1]}): set START_YEAR/END_YEAR "
                         "inside it or give climate for those years")
    missing = [v for v in header.extra_variables if v not in climate.variables]
    if missing:
        raise ValueError(f"CLIMATE lacks {', '.join(missing)}, which the model was trained with")
    folder = Path(output_folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    names = file_names([gid for gid, _, _ in glaciers])
    items = [(gid, geom, crs, hemis.get(str(gid)), str(folder / f"{names[n]}_mass_balance.tif"))
             for n, (gid, geom, crs) in enumerate(glaciers)]

    def done(i, series):
        if not series.rows:
            return None
        return (f"{series.glacier}: mean Ba {np.mean([r['ba'] for r in series.rows]):+.2f} "
                f"m w.e. over {len(years)} years")

    series = pool.run(predict_glacier, items, progress, done=done, common=(inputs, tuple(years)))
    if pool.remote:
        remove_partials(s.raster for s in series)
    return series


def predict_glacier(inputs: PredictionInputs, years, gid, geom, crs, hemi, raster, *,
                    progress: Progress) -> GlacierSeries:
    """One glacier's balances: its DEM cells, their monthly climate, the model, a raster."""
    booster, header, options, climate, topo = inputs.open()
    years = list(years)
    if geom is None or geom.is_empty:
        progress.warning(f"{gid}: no balance: the feature has no outline (empty geometry in INVENTORY)")
        return GlacierSeries(gid, [], None, [])
    sites, (rows, cols) = topo.cells(geom, crs)
    if not sites:
        progress.warning(f"{gid}: no balance: {topo.why_no_cell(geom, crs)}")
        return GlacierSeries(gid, [], None, [])
    months = [ym for y in years for ym in hydro_year_months(y, hemi)]
    winter_index, summer_index = season_index(hemi)
    annual, winter, summer = (np.empty((len(sites), len(years)), np.float32) for _ in range(3))
    for s0 in range(0, len(sites), SITES_PER_CHUNK):  # memory bounded on a large glacier
        part = sites[s0:s0 + SITES_PER_CHUNK]
        try:
            x = site_month_features(climate, part, months, options, header.extra_variables)
        except ValueError as err:
            raise ValueError(f"glacier {gid}: {err}") from None
        monthly = predict_rows(booster, x).reshape(len(part), len(years), 12)
        winter[s0:s0 + len(part)] = monthly[:, :, winter_index].sum(axis=2)
        summer[s0:s0 + len(part)] = monthly[:, :, summer_index].sum(axis=2)
        annual[s0:s0 + len(part)] = monthly.sum(axis=2)
        progress.check()
    series = [dict(glacier_id=str(gid), year=y, ba=float(annual[:, k].mean()),
                   bw=float(winter[:, k].mean()), bs=float(summer[:, k].mean()))
              for k, y in enumerate(years)]
    elev = np.array([s.elevation for s in sites])
    bands = np.arange(np.floor(elev.min() / 50) * 50, elev.max() + 50, 50)
    profile = [(float(b + 25), float(annual[(elev >= b) & (elev < b + 50)].mean()))
               for b in bands if ((elev >= b) & (elev < b + 50)).any()]
    _write_grid(Path(raster), topo, rows, cols, annual, winter, summer, years)
    return GlacierSeries(gid, series, Path(raster), profile)


def _write_grid(path, topo, rows, cols, annual, winter, summer, years):
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    h, w = r1 - r0, c1 - c0
    data = np.full((3 * len(years), h, w), np.nan, np.float32)
    names = []
    for k, y in enumerate(years):
        for j, (name, arr) in enumerate((("Ba", annual), ("Bw", winter), ("Bs", summer))):
            data[3 * k + j, rows - r0, cols - c0] = arr[:, k]
            names.append(f"{name}_{y}")
    transform = topo.transform * rasterio.Affine.translation(c0, r0)
    prof = dict(GTIFF_PROFILE, width=w, height=h, count=len(names), dtype="float32", crs=topo.crs,
                transform=transform, nodata=float("nan"), predictor=3)
    if w < 256 or h < 256:
        prof.update(tiled=False)
        prof.pop("blockxsize"), prof.pop("blockysize")
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **prof) as dst:
            dst.write(data)
            dst.descriptions = tuple(names)
            dst.update_tags(UNITS="m w.e.", CREATED=dt.date.today().isoformat(),
                            SEASONS="Bw: Oct-Apr, Bs: May-Sep, Ba: Oct-Sep (hydrological year)")


def plot_series(series: list[GlacierSeries], path, max_labelled: int = 6) -> Path:
    """Glacier-wide Ba/Bw/Bs series and the mass-balance/elevation profile, as a PNG. Up to
    `max_labelled` glaciers each get a labelled line; beyond that (a region of hundreds)
    every glacier is a thin grey line and the area-unweighted mean of Ba, Bw, Bs and its
    10-90 % range are drawn and labelled instead: no legend per glacier."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    with_rows = [s for s in series if s.rows]
    few = len(with_rows) <= max_labelled
    for s in with_rows:
        yrs = [r["year"] for r in s.rows]
        if few:
            a1.plot(yrs, [r["ba"] for r in s.rows], "-o", ms=3, label=f"{s.glacier} Ba")
            a1.plot(yrs, [r["bw"] for r in s.rows], "--", lw=1, label=f"{s.glacier} Bw")
            a1.plot(yrs, [r["bs"] for r in s.rows], ":", lw=1, label=f"{s.glacier} Bs")
        else:
            a1.plot(yrs, [r["ba"] for r in s.rows], "-", lw=0.4, color="0.75", zorder=1)
        if s.profile:
            z, b = zip(*s.profile)
            a2.plot(b, z, "-", lw=1 if few else 0.4, color=None if few else "0.7",
                    label=str(s.glacier) if few else None)
    if not few and with_rows:
        years = sorted({r["year"] for s in with_rows for r in s.rows})
        for key, style, label in (("ba", "-", "Ba"), ("bw", "--", "Bw"), ("bs", ":", "Bs")):
            values = [[r[key] for s in with_rows for r in s.rows if r["year"] == y] for y in years]
            a1.plot(years, [np.mean(v) for v in values], style, color="C0" if key == "ba" else "C3" if key == "bs" else "C2",
                    lw=2, zorder=3, label=f"mean {label} of {len(with_rows)} glaciers")
            if key == "ba":
                a1.fill_between(years, [np.percentile(v, 10) for v in values], [np.percentile(v, 90) for v in values],
                                color="C0", alpha=0.2, zorder=2, label="Ba, 10-90 % of glaciers")
    a1.axhline(0, color="k", lw=0.5)
    a1.set_xlabel("hydrological year")
    a1.set_ylabel("glacier-wide balance (m w.e.)")
    a1.legend(fontsize=7)
    a2.axvline(0, color="k", lw=0.5)
    a2.set_xlabel("mean annual balance (m w.e.)")
    a2.set_ylabel("elevation (m)")
    if few:
        a2.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    with atomic_output(path.with_suffix(".html")) as tmp:  # for the Processing results viewer
        Path(tmp).write_text(f'<html><body><h1>Mass balance</h1><img src="{path.name}"></body></html>',
                             encoding="utf-8")
    return path

