"""Ensemble members (DL4GAM's seed ensembles) run as one network.

train_model with MEMBERS > 1 writes models that differ only by their seed. Segmenting with
all of them used to take one run per member; here the members become one module whose
output holds every member's logits, so a batch is read, cut and sent once and a runtime
(onnxruntime, OpenVINO) runs one graph: docs/benchmarks.md, "Ensembles". The members must
read the same inputs the same way (bands, features, normalisation, pixel size): the tiles
are normalised once for all of them."""
from __future__ import annotations

from pathlib import Path

from .model_file import ModelFileError, ModelHeader, read_header

NO_INT8 = ("PRECISION int8 quantises one model at a time, checked on its own validation glaciers; with "
           "ENSEMBLE use PRECISION fp32 (or auto)")


def member_models(model_path, ensemble) -> list[str]:
    """MODEL first, then the ENSEMBLE members not already named (train_model's MODELS output
    lists MODEL too), as absolute paths."""
    first = str(Path(model_path).resolve())
    out = [first]
    for m in ensemble or ():
        m = str(Path(m).resolve())
        if m not in out:
            out.append(m)
    return out


def check_members(models: list[str]) -> list[ModelHeader]:
    """The members' headers, refused with what to do when they cannot share one input or
    when one member is another's copy (it would count twice in the mean)."""
    from .backends import content_key
    headers, seen = [], {}
    for i, m in enumerate(models):
        try:
            header = read_header(m)
        except (ModelFileError, OSError) as err:
            raise ValueError(f"{'ENSEMBLE' if i else 'MODEL'}: {err}") from None
        key = content_key(m)
        if key in seen:
            raise ValueError(f"ENSEMBLE: {Path(m).name} is the same model as {Path(seen[key]).name} (identical "
                             "content): it would count twice in the mean; give each member once")
        seen[key] = m
        headers.append(header)
    first = headers[0]
    for m, h in zip(models[1:], headers[1:]):
        name = Path(m).name
        if (h.bands, h.features) != (first.bands, first.features):
            raise ValueError(f"ENSEMBLE: {name} reads bands {', '.join(h.bands)} and features "
                             f"{', '.join(h.features) or 'none'}; MODEL reads {', '.join(first.bands)} and "
                             f"{', '.join(first.features) or 'none'}: members must read the same inputs")
        if h.pixel_size_m != first.pixel_size_m:
            raise ValueError(f"ENSEMBLE: {name} was trained on {h.pixel_size_m:g} m pixels, MODEL on "
                             f"{first.pixel_size_m:g} m: members must come from the same imagery")
        if not _same_statistics(h, first):
            raise ValueError(f"ENSEMBLE: {name} normalises its inputs with other statistics than MODEL "
                             "(it was trained on other rasters): give members of one training (train_model "
                             "with MEMBERS > 1 writes them as <name>_seed<N>.gmm beside OUTPUT_MODEL)")
    return headers


def _same_statistics(a: ModelHeader, b: ModelHeader) -> bool:
    """Normalisations that agree to a thousandth of a standard deviation: the tiles are
    normalised once, with MODEL's. Models trained apart on the same rasters differ in the last
    digits (moments merged in another order); models of other rasters differ by far more."""
    import numpy as np
    scale = np.abs(np.asarray(b.std, float))
    return bool(np.all(np.abs(np.subtract(a.mean, b.mean)) <= 1e-3 * scale)
                and np.all(np.abs(np.subtract(a.std, b.std)) <= 1e-3 * scale))


def stacked(networks):
    """One module: (N, C, H, W) -> (N, M, H, W), member m's logits in channel m."""
    import torch

    class Stacked(torch.nn.Module):
        def __init__(self, members):
            super().__init__()
            self.members = torch.nn.ModuleList(members)

        def forward(self, x):
            return torch.cat([m(x) for m in self.members], 1)

    return Stacked(networks).eval()


def member_outputs(folder, models: list[str]) -> list[Path]:
    """OUTPUT_MEMBERS' rasters: one per member, numbered in member order and named by its
    model, so area_change's START_ENSEMBLE / END_ENSEMBLE take the list as it is."""
    folder = Path(folder)
    return [folder / f"member{k + 1}_{Path(m).stem}.tif" for k, m in enumerate(models)]
