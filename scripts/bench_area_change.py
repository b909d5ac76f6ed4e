"""Truth check of area change with an ensemble on the synthetic region, whose true
per-glacier retreat is known: regional rate error, and how often each glacier's true rate
lies inside its ensemble interval (+-1 sigma should hold ~68 %, +-2 sigma ~95 %).

    .venv/bin/python scripts/bench_area_change.py [--members 3 --epochs 30]

Members are U-Nets trained with different seeds on the 2015 scene (DL4GAM uses 10); each
segments both dates; area_change takes member 1 as the prediction and all as the ensemble.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glacier_mapper_plugin.core.change.area_change import AreaChangeOptions, area_change  # noqa: E402
from glacier_mapper_plugin.core.labels import Inventory  # noqa: E402
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment  # noqa: E402
from glacier_mapper_plugin.core.imagery.synthetic import make_region  # noqa: E402
from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model  # noqa: E402
from glacier_mapper_plugin.core.vector import read_layer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--size-km", type=float, default=6.0)
    p.add_argument("--glaciers", type=int, default=16)
    a = p.parse_args()
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        region = make_region(tmp / "region", seed=42, size_km=a.size_km, n_glaciers=a.glaciers)
        layer = read_layer(region.inventory, "inventory")
        inv = Inventory.from_layer(layer)
        probs = {0: [], 1: []}
        for m in range(a.members):
            model = tmp / f"member{m}.gmm"
            train_model([region.imagery_start], inv, model, region.dem,
                        TrainOptions(patch_size=128, encoder="resnet18", epochs=a.epochs, batch_size=8,
                                     learning_rate=2e-3, seed=100 + m, device="auto"))
            for d, img in ((0, region.imagery_start), (1, region.imagery_end)):
                out = tmp / f"m{m}_{d}.tif"
                segment(img, model, out, dem_path=region.dem, options=SegmentOptions(tile_size=256, overlap=64))
                probs[d].append(out)
            print(f"member {m + 1}/{a.members} done ({time.time() - t_start:.0f} s)", flush=True)
        res = area_change(inv, probs[0][:1], probs[1][:1], [region.imagery_start], [region.imagery_end],
                          AreaChangeOptions(), start_ensemble=[[q] for q in probs[0]],
                          end_ensemble=[[q] for q in probs[1]])
    truth = {r["id"]: r for r in layer.records}
    kept = [g for g in res.glaciers if g["kept"]]
    print(f"\n{'id':5} {'true %/yr':>9} {'measured':>9} {'sigma':>7} {'|err|/sigma':>11}")
    z = []
    for g in res.glaciers:
        t = truth[g["id"]]["true_rate_pct_yr"]
        s = g["rate_sigma_pct_yr"]
        zz = abs(g["rate_pct_yr"] - t) / s if s and s > 0 else float("inf")
        if g["kept"]:
            z.append(zz)
        print(f"{g['id']:5} {t:9.2f} {g['rate_pct_yr']:9.2f} {s:7.2f} {zz:11.2f}  "
              f"{g['filter_reason'] or 'kept'}")
    z = np.array(z)
    a0 = sum(truth[g["id"]]["area_km2"] for g in kept)
    true_kept = sum(truth[g["id"]]["true_rate_km2_yr"] for g in kept) / a0 * 100
    reg = res.regional
    print(f"\nregional rate {reg['rate_pct_yr']:.3f} +- {reg['rate_sigma_pct_yr']:.3f} %/yr; truth "
          f"{true_kept:.3f} for the {len(kept)} kept glaciers (error {reg['rate_pct_yr'] - true_kept:+.3f}), "
          f"{region.true_regional_rate_pct_yr:.3f} for all")
    print(f"coverage of the true rate: +-1 sigma {np.mean(z <= 1):.0%} (nominal 68 %), "
          f"+-2 sigma {np.mean(z <= 2):.0%} (nominal 95 %) over {len(z)} kept glaciers; "
          f"{a.members} members, {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
