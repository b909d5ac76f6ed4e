"""The Mass Balance Machine (Sjursen et al. 2025): a *monthly* gradient-boosted model of
surface mass balance, trained on seasonal/annual observations by summing its monthly
predictions over each observation's months (a custom XGBoost objective), with features from
monthly climate and topography; and a temperature-index (degree-day) model as the baseline
it has to beat.

Each observation becomes one row per month it covers; an observation may also be
glacier-wide (rows for a sample of DEM cells, averaged), so glacier-wide seasonal records
train the same monthly model. The model file is XGBoost's JSON plus a JSON header in one
JSON document: nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .seasons import hemisphere, hydro_month
from .climate import MonthlyClimate
from ..io import atomic_output
from .stakes import Observation

FORMAT = "glacier-mapper-mbm"


@dataclass
class MBMOptions:
    lapse_rate: float = -0.0065      # deg C per m, applied from the climate cell to the point
    precipitation_factor: float = 1.0
    n_estimators: int = 300
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.8
    min_child_weight: float = 1.0
    seed: int = 42
    prior: str = "degree-day"        # degree-day: trees learn corrections to a calibrated
    #                                  temperature-index model; none: the plain machine
    hemisphere: str = "auto"         # seasons: auto (from each site's latitude), north, south


@dataclass
class Site:
    """Where balance is modelled: a point (stake) or a DEM cell."""
    lon: float
    lat: float
    elevation: float
    slope: float = 0.0
    aspect: float = 0.0


FEATURES = ("temperature", "precipitation", "dz", "elevation", "slope", "aspect_sin",
            "aspect_cos", "hydro_month")


def site_month_features(climate: MonthlyClimate, sites: list[Site], months, options: MBMOptions,
                        extra_vars=()) -> np.ndarray:
    """Feature rows for every (site, month) pair, sites outer, months inner: float32 arrays
    gathered at once (a glacier has 10^4-10^5 DEM cells and hundreds of months)."""
    n_features = len(FEATURES) + len(extra_vars)
    if not len(sites) or not len(months):
        return np.zeros((0, n_features), np.float32)
    lon = np.array([s.lon for s in sites])
    lat = np.array([s.lat for s in sites])
    elevation = np.array([s.elevation for s in sites])
    aspect = np.radians([s.aspect for s in sites])
    r, c = climate.cells(lon, lat, "a site")
    t = np.array([climate.index(y, m) for y, m in months])
    dz = elevation - climate.elevation[r, c].astype(np.float64)
    gather = lambda v: climate.variables[v][t[None, :], r[:, None], c[:, None]]  # noqa: E731 (sites, months)
    x = np.empty((len(sites), len(months), n_features), np.float32)
    x[..., 0] = gather("temperature") + (options.lapse_rate * dz)[:, None]  # in float64, then stored
    x[..., 1] = gather("precipitation") * options.precipitation_factor
    x[..., 2] = dz[:, None]
    x[..., 3] = elevation[:, None]
    x[..., 4] = np.array([s.slope for s in sites])[:, None]
    x[..., 5] = np.sin(aspect)[:, None]
    x[..., 6] = np.cos(aspect)[:, None]
    month = np.array([m for _, m in months])
    north = np.array([hemisphere(la, options.hemisphere) == "north" for la in lat])
    x[..., 7] = np.where(north[:, None], [hydro_month(m, "north") for m in month],
                         [hydro_month(m, "south") for m in month])
    for j, v in enumerate(extra_vars):
        x[..., len(FEATURES) + j] = gather(v)
    return x.reshape(-1, n_features)


@dataclass
class Design:
    """Monthly rows, which observation each belongs to, and the row weights that turn
    monthly predictions into the observed quantity (1 for points, 1/n for n-cell means)."""
    x: np.ndarray
    group: np.ndarray
    weight: np.ndarray
    target: np.ndarray        # per observation
    observations: list
    positions: list = field(default_factory=list)  # index of each kept observation in the input


def design(observations: list[Observation], climate: MonthlyClimate, options: MBMOptions,
           topography=None, glacier_sites: dict | None = None, extra_vars=()) -> Design:
    """glacier_sites: glacier -> [Site] (its DEM cells) for glacier-wide observations and
    elevation-band observations ('band:LOW:HIGH', the cells of the band), whose target is the
    area-weighted mean of their cells' summed monthly balances, as the MBM aggregates.
    Observations that cannot be placed are left out; `positions` says which were kept."""
    xs, groups, weights, targets, kept, positions = [], [], [], [], [], []
    for n, obs in enumerate(observations):
        months = [ym for ym in obs.months() if climate.has(*ym)]
        if len(months) != len(obs.months()) or not months:
            continue  # climate does not cover the period
        sites = observation_sites(obs, glacier_sites, topography)
        if not sites:
            continue
        try:
            x = site_month_features(climate, sites, months, options, extra_vars)
        except ValueError as err:  # name the observation, not just a position
            raise ValueError(f"observation {obs.glacier} {obs.point_id} ({obs.from_date} to {obs.to_date}): {err}") from None
        k = len(kept)
        xs.append(x)
        groups.append(np.full(len(x), k))
        weights.append(np.full(len(x), 1.0 / len(sites)))
        targets.append(obs.balance)
        kept.append(obs)
        positions.append(n)
    if not kept:
        raise ValueError("no observation is covered by the climate data (check the periods "
                         "and the climate file's time span)")
    return Design(np.concatenate(xs), np.concatenate(groups), np.concatenate(weights),
                  np.asarray(targets, np.float64), kept, positions)


def observation_kind(obs) -> str:
    if obs.point_id == "glacier-wide":
        return "glacier-wide"
    return "band" if str(obs.point_id).startswith("band:") else "point"


SITES_PER_RECORD = 200  # DEM cells a glacier-wide or band record averages over, at most
_ELEVATIONS: dict = {}


def observation_sites(obs, glacier_sites=None, topography=None) -> list:
    """The sites whose mean an observation measures ([] when it cannot be placed): the point,
    or the DEM cells of the glacier (glacier-wide) or of the band, from all its cells, a
    seeded random SITES_PER_RECORD of them where there are more. Sampling each record from its
    own area (not the glacier's sample) keeps every band that has a cell, however narrow."""
    kind = observation_kind(obs)
    if kind == "point":
        slope, aspect = topography(obs.lon, obs.lat) if topography else (0.0, 0.0)
        return [Site(obs.lon, obs.lat, obs.elevation, slope, aspect)]
    cells = (glacier_sites or {}).get(obs.glacier) or []
    index = np.arange(len(cells))
    if kind == "band":
        key = (id(cells), len(cells))  # the same list for the whole training: elevations once
        if key not in _ELEVATIONS:
            _ELEVATIONS.clear()
            _ELEVATIONS[key] = np.fromiter((s.elevation for s in cells), float, len(cells))
        _, low, high = str(obs.point_id).split(":")
        z = _ELEVATIONS[key]
        index = index[(z >= float(low)) & (z < float(high))]
    if len(index) > SITES_PER_RECORD:
        seed = int(hashlib.sha256(f"{obs.glacier}|{obs.point_id}".encode()).hexdigest()[:8], 16)
        index = np.sort(np.random.default_rng(seed).choice(index, SITES_PER_RECORD, replace=False))
    return [cells[i] for i in index]


def aggregated_objective(group: np.ndarray, weight: np.ndarray, target: np.ndarray):
    """XGBoost objective for observations that are weighted sums of monthly predictions:
    loss = sum_obs (S_obs - y_obs)^2 / 2 with S_obs = sum_rows w f; grad_row = w (S - y).
    The Hessian w w^T couples an observation's rows; its plain diagonal w^2 lets a leaf that
    holds all 560 rows of a glacier-wide season overshoot by a factor of hundreds, so the
    diagonal majorant w * sum(w) is used: a leaf holding a whole observation then moves it
    by exactly one Newton step, never more."""
    total = np.bincount(group, weights=weight, minlength=len(target))
    hess = weight * total[group]

    def objective(preds, dtrain=None):
        sums = np.bincount(group, weights=weight * preds, minlength=len(target))
        residual = sums - target
        return weight * residual[group], hess
    return objective


def aggregate(preds, group, weight, n):
    return np.bincount(group, weights=weight * preds, minlength=n)


def _params(options: MBMOptions, n_features: int):
    # Physics as constraints: warmer never raises the balance, more precipitation never
    # lowers it. With annual records only, this is what keeps the monthly split physical.
    monotone = [0] * n_features
    monotone[FEATURES.index("temperature")] = -1
    monotone[FEATURES.index("precipitation")] = 1
    return {"max_depth": options.max_depth, "eta": options.learning_rate,
            "subsample": options.subsample, "min_child_weight": options.min_child_weight,
            "seed": options.seed, "tree_method": "hist", "base_score": 0.0, "nthread": 0,
            "monotone_constraints": "(" + ",".join(map(str, monotone)) + ")"}


@dataclass
class MBMModel:
    """The boosted trees and, optionally, the degree-day prior they correct."""
    booster: object
    prior: "DegreeDay | None" = None


def fit(d: Design, options: MBMOptions, progress=None) -> MBMModel:
    """Boost monthly trees on the aggregated objective. With the degree-day prior (default)
    the trees start from a temperature-index model calibrated on the same observations:
    with annual records only, nothing else decides how a year's balance splits into months,
    and the prior also carries the temperature sensitivity beyond the training climate,
    where trees are flat."""
    import xgboost as xgb
    prior = DegreeDay().calibrate(d) if options.prior == "degree-day" else None
    if options.prior not in ("degree-day", "none"):
        raise ValueError(f"prior must be degree-day or none, not {options.prior!r}")
    dtrain = xgb.DMatrix(d.x, feature_names=_feature_names(d.x.shape[1]),
                         base_margin=prior.monthly(d.x) if prior else None)
    obj = aggregated_objective(d.group, d.weight, d.target)

    class _Callback(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if progress is not None:
                progress.update((epoch + 1) / options.n_estimators)
            return False

    booster = xgb.train(_params(options, d.x.shape[1]), dtrain, num_boost_round=options.n_estimators,
                        obj=obj, callbacks=[_Callback()])
    return MBMModel(booster, prior)


def _feature_names(n):
    names = list(FEATURES)
    return names + [f"extra{i}" for i in range(n - len(names))]


def predict_rows(model: MBMModel, x):
    import xgboost as xgb
    margin = model.prior.monthly(x) if model.prior else None
    return model.booster.predict(xgb.DMatrix(x, feature_names=_feature_names(x.shape[1]),
                                             base_margin=margin))


def scores(pred, obs) -> dict:
    pred, obs = np.asarray(pred, float), np.asarray(obs, float)
    if len(obs) == 0:
        return {"n": 0, "rmse": float("nan"), "bias": float("nan"), "r2": float("nan")}
    err = pred - obs
    ss = np.sum((obs - obs.mean()) ** 2)
    return {"n": int(len(obs)), "rmse": float(np.sqrt(np.mean(err ** 2))), "bias": float(err.mean()),
            "r2": float(1 - np.sum(err ** 2) / ss) if ss > 0 else float("nan")}


def cv_splits(observations: list[Observation], k: int = 5):
    """Leave-glaciers-out folds; with a single glacier, leave-years-out."""
    glaciers = sorted({o.glacier for o in observations})
    key = (lambda o: o.glacier) if len(glaciers) > 1 else (lambda o: o.year)
    values = sorted({key(o) for o in observations})
    k = min(k, len(values))
    if k < 2:
        raise ValueError("cross-validation needs at least two glaciers or two years")
    fold_of = {v: i % k for i, v in enumerate(values)}
    return [[i for i, o in enumerate(observations) if fold_of[key(o)] == f] for f in range(k)], \
        ("glaciers" if len(glaciers) > 1 else "years")


def metrics_by_period(pred, observations) -> dict:
    out = {}
    for period in ("annual", "winter", "summer"):
        for kind in ("point", "band", "glacier-wide"):
            idx = [i for i, o in enumerate(observations) if o.period == period and observation_kind(o) == kind]
            if idx:
                out[f"{period}_{kind}"] = scores([pred[i] for i in idx], [observations[i].balance for i in idx])
    return out


# --------------------------------------------------------------------------- model file

@dataclass
class MBMHeader:
    options: dict
    features: list
    extra_variables: list
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = 1


def save_mbm(path, model: MBMModel, header: MBMHeader) -> Path:
    header.training = dict(header.training, prior=asdict(model.prior) if model.prior else None)
    doc = {"header": asdict(header),
           "booster": json.loads(bytes(model.booster.save_raw("json")).decode())}
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(doc))
    return Path(path)


def load_mbm(path):
    import xgboost as xgb
    try:
        doc = json.loads(Path(path).read_text())
        header = MBMHeader(**doc["header"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"MODEL {path} is not a Glacier Mapper mass-balance model: {err}") from None
    if header.format != FORMAT:
        raise ValueError(f"MODEL {path}: format {header.format!r}, expected {FORMAT}")
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(doc["booster"]).encode()))
    prior = header.training.get("prior")
    return MBMModel(booster, DegreeDay(**prior) if prior else None), header


# --------------------------------------------------------------------------- baseline

@dataclass
class DegreeDay:
    """Monthly temperature-index model: melt = DDF * positive degree days, accumulation =
    precipitation * factor below a rain/snow threshold."""
    ddf: float = 0.004              # m w.e. per positive degree day
    precipitation_factor: float = 1.0
    t_snow: float = 1.0
    t_melt: float = 0.0

    def monthly(self, x: np.ndarray) -> np.ndarray:
        temp, prcp = x[:, 0].astype(float), x[:, 1].astype(float)
        days = 30.4
        snow = prcp / 1000.0 * np.clip((self.t_snow + 1.0 - temp) / 2.0, 0, 1)  # ramp over 2 deg
        melt = self.ddf * np.maximum(temp - self.t_melt, 0.0) * days
        return self.precipitation_factor * snow - melt

    def calibrate(self, d: Design):
        """DDF and precipitation factor by least squares on the observations (grid search)."""
        best = None
        for ddf in np.linspace(0.001, 0.012, 45):
            for pf in np.linspace(0.5, 3.0, 51):
                self.ddf, self.precipitation_factor = ddf, pf
                pred = aggregate(self.monthly(d.x), d.group, d.weight, len(d.target))
                err = float(np.mean((pred - d.target) ** 2))
                if best is None or err < best[0]:
                    best = (err, ddf, pf)
        _, self.ddf, self.precipitation_factor = best
        return self
