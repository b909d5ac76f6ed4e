"""Print a Glacier Mapper model file's header as a model card, or write an untrained model.

    .venv/bin/python scripts/model_card.py MODEL.gmm [--json]
    .venv/bin/python scripts/model_card.py --new-untrained OUT.gmm --bands B2,B3,B4,B8,B12,DEM \
        [--encoder resnet34] [--seed 0]
"""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glacier_mapper_plugin.core.segmentation.model_file import ModelFileError, new_model, read_header  # noqa: E402


def card(header) -> str:
    lines = [f"Glacier Mapper model (format {header.format_version})",
             f"  architecture  {header.architecture} / encoder {header.encoder}, {header.classes} class",
             f"  pixel size    {header.pixel_size_m:g} m, patch {header.patch_size} px, threshold {header.threshold:g}",
             "  bands         mean / std"]
    for band, m, s in zip(header.bands, header.mean, header.std):
        lines.append(f"    {band:6} {m:12.4f} {s:12.4f}  {header.units.get(band, '')}")
    lines.append("  training      " + (json.dumps(header.training) if header.training else "untrained"))
    lines.append("  metrics       " + (json.dumps(header.metrics) if header.metrics else "none"))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print the raw header as JSON")
    p.add_argument("--new-untrained", action="store_true", help="write an untrained model to MODEL")
    p.add_argument("--bands", default="B2,B3,B4,B8,B12,DEM")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        if a.new_untrained:
            new_model(a.model, a.bands.split(","), encoder=a.encoder, seed=a.seed)
        header = read_header(a.model)
    except ModelFileError as err:
        sys.exit(f"error: {err}")
    print(json.dumps(asdict(header), indent=2) if a.json else card(header))


if __name__ == "__main__":
    main()
