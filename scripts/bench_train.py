"""Training benchmarks on the synthetic region.

    .venv/bin/python scripts/bench_train.py throughput [--patch 256 --encoder resnet34 --batch 8]
    .venv/bin/python scripts/bench_train.py crossval   [--folds 5 --epochs 15 --patch 128 --encoder resnet18]
    .venv/bin/python scripts/bench_train.py pipeline   [--patch 128 --encoder resnet18 --size-km 10 --glaciers 50]

throughput: training patches/s (forward + masked BCE + backward + AdamW step) on this
machine's device. pipeline: train_model's own throughput (patches streamed from the on-disk cache through the
DataLoader, augmented, stepped) as a ratio to the raw step measured in the same run; the
goal is >= 0.9. crossval: held-out-fold IoU of geographic cross-validation, the paper's
Table 1 on the synthetic region, with the defaults scaled down for a 2-core CPU.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


import numpy as np  # noqa: E402
import torch  # noqa: E402

from glacier_mapper_plugin.core.segmentation.crossval import cross_validate  # noqa: E402
from glacier_mapper_plugin.core.labels import Inventory  # noqa: E402
from glacier_mapper_plugin.core.segmentation.model_file import ModelHeader, build_network  # noqa: E402
from glacier_mapper_plugin.core.progress import Progress  # noqa: E402
from glacier_mapper_plugin.core.segmentation.segment import pick_device  # noqa: E402
from glacier_mapper_plugin.core.imagery.synthetic import make_region  # noqa: E402
from glacier_mapper_plugin.core.segmentation.train import TrainOptions, masked_bce  # noqa: E402
from glacier_mapper_plugin.core.vector import read_layer  # noqa: E402


def raw_rate(device, encoder, patch, batch, steps):
    """Patches/s of the training step alone (forward + masked BCE + backward + AdamW) on
    batches already on the device, with the loop's precision and memory format."""
    from glacier_mapper_plugin.core.segmentation.train import _memory_format
    header = ModelHeader(bands=["B2", "B3", "B4", "B8", "B12", "DEM"], mean=[0.0] * 6, std=[1.0] * 6,
                         encoder=encoder)
    torch.manual_seed(0)
    fmt = _memory_format(device)
    net = build_network(header).to(device, memory_format=fmt).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 6, patch, patch, device=device).to(memory_format=fmt)
    y = (torch.rand(batch, patch, patch, device=device) > 0.5).float()
    v = torch.ones_like(y, dtype=torch.bool)
    amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if device == "cuda" else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=amp, enabled=amp is not None):
            logits = net(x)[:, 0]
        loss = masked_bce(logits.float(), y, v)
        loss.backward()
        opt.step()
        float(loss.detach())  # as the loop does: the step is finished when timed

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def throughput(args):
    device = pick_device(args.device)
    rate = raw_rate(device, args.encoder, args.patch, args.batch, args.steps)
    print(f"training throughput: {rate:.2f} patches/s ({args.encoder}, patch {args.patch}, "
          f"batch {args.batch}, {device}, {torch.get_num_threads()} threads)")


def pipeline(args):
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        region = make_region(Path(tmp) / "region", seed=args.seed, size_km=args.size_km,
                             n_glaciers=args.glaciers)
        inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
        opts = TrainOptions(patch_size=args.patch, encoder=args.encoder, epochs=args.epochs,
                            batch_size=args.batch, device=args.device, seed=args.seed,
                            val_fraction=0.0, patch_cache=str(Path(tmp) / "patches"))
        # The patches are cut first (not timed as training: the loop's rate excludes it).
        from glacier_mapper_plugin.core.segmentation.train import train_model
        res = train_model([region.imagery_start], inv, Path(tmp) / "m.gmm", region.dem, opts,
                          Progress(echo=args.verbose))
        t = res.header.training
        raw = raw_rate(device, args.encoder, args.patch, args.batch, args.steps)
    print(f"{region.n_glaciers} glaciers, {t['patches_train']} patches of {args.patch} px, {args.encoder}, "
          f"batch {args.batch}, {device}, {t['loader_workers']} loader worker(s), {torch.get_num_threads()} threads")
    print(f"train_model: {t['patches_per_s']:.2f} patches/s (step share {t['step_share']:.3f}); raw step "
          f"{raw:.2f} patches/s; ratio {t['patches_per_s'] / raw:.3f}")


def crossval(args):
    with tempfile.TemporaryDirectory() as tmp:
        region = make_region(Path(tmp) / "region", seed=args.seed, size_km=args.size_km,
                             n_glaciers=args.glaciers)
        inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
        t0 = time.perf_counter()
        cv = cross_validate([region.imagery_start], inv, Path(tmp) / "cv", region.dem, args.folds,
                            TrainOptions(patch_size=args.patch, encoder=args.encoder,
                                         epochs=args.epochs, batch_size=args.batch,
                                         learning_rate=args.lr, device=args.device, seed=args.seed),
                            Progress(echo=args.verbose), predict=False)
        print(f"region seed {args.seed}: {args.size_km} km, {region.n_glaciers} glaciers; "
              f"{args.folds} folds, {args.encoder}, patch {args.patch}, {args.epochs} epochs, "
              f"batch {args.batch}, lr {args.lr}: {time.perf_counter() - t0:.0f} s")
        print(f"{'subregion':>10} {'#patches':>9} {'#glaciers':>9} {'accuracy':>9} {'IoU':>7} "
              f"{'precision':>9} {'recall':>7} {'F1':>7}")
        for r in cv.table():
            def f(k):
                return f"{r[k]:.3f}" if r[k] is not None and np.isfinite(r[k]) else "-"
            print(f"{r['subregion']:>10} {str(r['patches'] or ''):>9} {str(r['glaciers'] or ''):>9} "
                  f"{f('accuracy'):>9} {f('iou'):>7} {f('precision'):>9} {f('recall'):>7} {f('f1'):>7}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["throughput", "crossval", "pipeline"])
    p.add_argument("--device", default="auto")
    p.add_argument("--patch", type=int, default=None)
    p.add_argument("--encoder", default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None, help="default: 1 (pipeline), 15 (crossval)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--size-km", type=float, default=4.0)
    p.add_argument("--glaciers", type=int, default=8)
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args()
    if a.what == "throughput":
        a.patch, a.encoder = a.patch or 256, a.encoder or "resnet34"
        throughput(a)
    elif a.what == "pipeline":
        a.patch, a.encoder, a.epochs = a.patch or 128, a.encoder or "resnet18", a.epochs or 1
        pipeline(a)
    else:
        a.patch, a.encoder, a.epochs = a.patch or 128, a.encoder or "resnet18", a.epochs or 15
        crossval(a)
