"""The same truth delivered in two forms: the largest difference between the two results, for
the forms of README's "Inputs" table that can be built here (the climate pairs need
../shared/data). Run from the repository root:

    .venv/bin/python scripts/bench_invariance.py [--tiles]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"


def climate_pairs(work: Path) -> list[tuple[str, float]]:
    from glacier_mapper_plugin.core.massbalance.climate import read_climate
    from tests.core.massbalance.test_climate import _transplant
    from tests.engine.steps.test_massbalance import regional_extract, split_as_the_cds_delivers
    era5 = SHARED / "oggm_era5land_oetztal"
    files = [era5 / "sel_era5_land_monthly_t2m_1981-2018.nc", era5 / "sel_era5_land_monthly_prcp_1981-2018.nc",
             era5 / "sel_era5_land_invariant.nc"]
    whole = read_climate(files)
    split = read_climate(split_as_the_cds_delivers(files, work / "split"))
    out = [("climate: one file per variable vs split by period + expver (t2m, tp)",
            max(float(np.nanmax(np.abs(whole.variables[v] - split.variables[v]))) for v in ("temperature", "precipitation")))]
    extract = read_climate(regional_extract(files, work / "extract"))
    r, c = whole.cell(10.7584, 46.8003)
    re, ce = extract.cell(10.7584, 46.8003)
    out.append(("climate: regional extract vs the whole file, at Hintereisferner's cell",
                float(np.abs(whole.variables["temperature"][:, r, c] - extract.variables["temperature"][:, re, ce]).max())))
    west = read_climate(_transplant(files, work / "west", 21.0))
    wrapped = read_climate(_transplant(files, work / "wrapped", 21.0, wrap=True))
    out.append(("climate: longitudes -180..180 vs 0..360",
                float(np.nanmax(np.abs(west.variables["temperature"] - wrapped.variables["temperature"])))))
    return out


def chip_order(work: Path) -> tuple[str, float]:
    from tests.core.change.test_area_change import _rows, _scene_and_chips
    inv, rasters = _scene_and_chips(work, [[0, 8, 0], 3, 0, 5])
    a, b = _rows(inv, rasters, [0, 1, 2, 3]), _rows(inv, rasters, [3, 1, 0, 2])
    diff = max(abs((x["rate_pct_yr"] or 0) - (y["rate_pct_yr"] or 0)) for x, y in zip(a, b))
    return "area change: scene + chips listed in two orders (rate, %/yr)", diff


def float_dns(work: Path) -> tuple[str, float]:
    from glacier_mapper_plugin.core.imagery.synthetic import make_region
    from tests.core.imagery.test_bands import _decoded, _float_copy
    region = make_region(work / "region", seed=3, size_km=2.0, n_glaciers=2)
    ref = _decoded(region.imagery_end)
    got = _decoded(_float_copy(region.imagery_end, work / "dn.tif"))
    return "scene: uint16 DNs vs the same DNs as Float32 (B8 reflectance)", float(np.nanmax(np.abs(ref - got)))


def tile_sizes(work: Path, sizes=(384, 512, 768, 1024)) -> list[tuple[str, float]]:
    """A barely trained model (2 epochs on an 8 km synthetic region: the hardest case) applied
    to the region's 2023 scene (800 x 800) with several tile sizes at the default overlap."""
    import itertools

    import rasterio

    from glacier_mapper_plugin.core.imagery.synthetic import make_region
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment
    from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model
    from glacier_mapper_plugin.core.vector import read_layer
    region = make_region(work / "tiles", seed=7, size_km=8.0, n_glaciers=20)
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"), "id")
    model = work / "e2.gmm"
    train_model([region.imagery_start], inv, model, region.dem,
                TrainOptions(patch_size=128, encoder="resnet18", epochs=2, batch_size=8, learning_rate=0.002, seed=42))
    probs = {}
    for tile in sizes:
        out = work / f"p{tile}.tif"
        segment(region.imagery_end, model, out, dem_path=region.dem,
                options=SegmentOptions(tile_size=tile, precision="fp32"))
        with rasterio.open(out) as src:
            probs[tile] = src.read(1)
    rows = []
    for a, b in itertools.combinations(sizes, 2):
        x, y = probs[a], probs[b]
        ok = np.isfinite(x) & np.isfinite(y)
        rows.append((f"segment: {a} vs {b} px tiles, share of pixels that differ",
                     float(np.mean((x[ok] >= 0.5) != (y[ok] >= 0.5)))))
        rows.append((f"segment: {a} vs {b} px tiles, mean |dp|", float(np.mean(np.abs(x[ok] - y[ok])))))
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "chips").mkdir()
        results = [chip_order(work / "chips"), float_dns(work)]
        if SHARED.is_dir():
            results += climate_pairs(work)
        else:
            print("(../shared/data absent: climate pairs skipped)")
        if "--tiles" in sys.argv:  # trains a model first: about two minutes on 2 cores
            results += tile_sizes(work)
    width = max(len(name) for name, _ in results)
    for name, diff in results:
        print(f"{name:<{width}}  largest difference {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
