"""Ensemble members (DL4GAM's seed ensembles) run as one network.

train_model with MEMBERS > 1 writes models that differ only by their seed. Segmenting with
all of them used to take one run per member; here the members become one module whose
output holds every member's logits, so a batch is read, cut and sent once and a runtime
(onnxruntime, OpenVINO) runs one graph: docs/benchmarks.md, "Ensembles". The members must
read the same inputs (bands, features, pixel size): the tiles are read and normalised once,
with the first member's statistics, and re-normalised inside the module for a member whose
statistics differ (trained apart)."""
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
    return headers


def same_statistics(a: ModelHeader, b: ModelHeader) -> bool:
    """Normalisations that agree to a thousandth of a standard deviation (members of one
    training share theirs; models trained apart, even on the same rasters with other seeds,
    saw other training glaciers and differ)."""
    import numpy as np
    scale = np.abs(np.asarray(b.std, float))
    return bool(np.all(np.abs(np.subtract(a.mean, b.mean)) <= 1e-3 * scale)
                and np.all(np.abs(np.subtract(a.std, b.std)) <= 1e-3 * scale))


def stacked(networks, headers: list[ModelHeader]):
    """One module: (N, C, H, W) normalised with the first member's statistics -> (N, M, H, W),
    member m's logits in channel m. A member with other statistics gets the tiles re-normalised
    to its own inside the module (an affine map per channel, exact for every valid pixel); at
    no-data pixels, which every member sees as the first member's band mean, it is not its own
    mean: a difference of (mean_0 - mean_m) / std_m of its standard deviations there."""
    import torch

    first = headers[0]
    maps = []
    for h in headers:
        if same_statistics(h, first):
            maps.append(None)
            continue
        std0, mean0 = torch.tensor(first.std), torch.tensor(first.mean)
        std, mean = torch.tensor(h.std), torch.tensor(h.mean)
        maps.append(((std0 / std).view(1, -1, 1, 1).float(), ((mean0 - mean) / std).view(1, -1, 1, 1).float()))

    class Stacked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.members = torch.nn.ModuleList(networks)
            for k, affine in enumerate(maps):
                if affine is not None:
                    self.register_buffer(f"scale{k}", affine[0])
                    self.register_buffer(f"shift{k}", affine[1])

        def forward(self, x):
            out = []
            for k, member in enumerate(self.members):
                if maps[k] is None:
                    out.append(member(x))
                else:
                    out.append(member(x * getattr(self, f"scale{k}") + getattr(self, f"shift{k}")))
            return torch.cat(out, 1)

    return Stacked().eval()


def member_outputs(folder, models: list[str]) -> list[Path]:
    """OUTPUT_MEMBERS' rasters: one per member, numbered in member order and named by its
    model, so area_change's START_ENSEMBLE / END_ENSEMBLE take the list as it is."""
    folder = Path(folder)
    return [folder / f"member{k + 1}_{Path(m).stem}.tif" for k, m in enumerate(models)]
