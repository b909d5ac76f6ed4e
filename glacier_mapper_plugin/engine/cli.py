"""`glacier-mapper <step>`: every algorithm from a shell, on machines without QGIS (an HPC
node, a cloud VM). Steps, parameter names, types, defaults and help come from the QGIS
algorithms themselves (parameters.json, exported by scripts/export_parameters.py): QGIS's
INPUT is --input, OUTPUT_PROBABILITY is --output-probability. Progress goes to stderr,
--json prints the result as JSON on stdout. Feature sinks (tables, joined layers) are
written as GeoPackages when their option is given. Ctrl-C cancels cleanly (no partial
output is left).

    glacier-mapper segment --input scene.tif --model model.gmm --output-probability p.tif
    glacier-mapper segment --help
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from ..core.progress import Cancelled, Progress
from . import runner

SPEC = Path(__file__).resolve().parent / "parameters.json"
OUTPUT_TYPES = {"sink", "rasterDestination", "vectorDestination", "fileDestination", "folderDestination"}


def load_spec() -> list[dict]:
    return json.loads(SPEC.read_text())["steps"]


def option(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


class StderrProgress(Progress):
    """Progress for a terminal: a percentage when it moves by a whole percent, and the log."""

    def __init__(self, quiet=False):
        super().__init__()
        self.quiet = quiet
        self._shown = -1

    def update(self, fraction, message=None):
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        pct = int(self.fraction * 100)
        if pct != self._shown and not self.quiet:
            sys.stderr.write(f"\r[{pct:3d}%]")
            sys.stderr.flush()
            self._shown = pct
        if message:
            self.info(message)
        self.check()

    def info(self, message):
        if not self.quiet:
            sys.stderr.write(f"\r       {message}\n")
            sys.stderr.flush()

    def warning(self, message):
        sys.stderr.write(f"\rWARNING: {message}\n")
        sys.stderr.flush()


def _argument(group, p: dict) -> None:
    kind, flag = p["type"], option(p["name"])
    text = (p["help"] or p["description"]).replace("%", "%%")  # argparse formats help with %
    kw: dict = {"dest": p["name"], "help": text}
    if kind == "multilayer":
        kw.update(action="append", metavar="PATH", help=text + " (repeat the option for several)")
    elif kind == "number":
        kw.update(type=int if p.get("integer") else float, metavar="N")
    elif kind == "distance":
        kw.update(type=float, metavar="M")
    elif kind == "enum":
        kw.update(choices=p["options"], metavar="{" + ",".join(p["options"]) + "}")
    elif kind == "boolean":
        kw.update(action=argparse.BooleanOptionalAction)
    elif kind in OUTPUT_TYPES:
        kw.update(metavar="PATH")
        if kind == "sink":
            kw["help"] = text + " (GeoPackage; written only when given)"
    elif kind == "datetime":
        kw.update(metavar="YYYY-MM-DD")
    else:
        kw.update(metavar="PATH" if kind in ("source", "raster", "file") else "TEXT")
    default = _default(p)
    kw["required"] = not p["optional"] and default is None and kind not in ("sink", "boolean")
    if default is not None and kind not in OUTPUT_TYPES:
        kw["help"] += f" (default: {default})"
    aliases = ["--dask"] if p["name"] == "DASK_SCHEDULER" else []  # the short name the README uses
    group.add_argument(flag, *aliases, **kw)


def _default(p: dict):
    d = p.get("default")
    if p["type"] in OUTPUT_TYPES or d in (None, ""):
        return None
    if p["type"] == "enum" and not p.get("static_strings"):
        return p["options"][int(d)]
    if p["type"] == "number" and p.get("integer"):
        return int(float(d))
    return d


def parser(steps=None) -> argparse.ArgumentParser:
    steps = steps or load_spec()
    ap = argparse.ArgumentParser(prog="glacier-mapper", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True, metavar="STEP")
    for s in steps:
        sp = sub.add_parser(s["cli"], help=s["display"], description=s["help"])
        group = sp.add_argument_group("parameters (QGIS names in upper case)")
        for p in s["parameters"]:
            _argument(group, p)
        sp.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        sp.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
        sp.set_defaults(_spec=s)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    spec = args._spec
    params = {}
    for p in spec["parameters"]:
        value = getattr(args, p["name"])
        params[p["name"]] = _default(p) if value is None else value
    runner.quiet_gdal()
    progress = StderrProgress(args.quiet)
    runner._CURRENT.append(progress)
    runner._die_with_parent()
    signal.signal(signal.SIGTERM, runner._on_signal)
    signal.signal(signal.SIGINT, runner._on_signal)
    started = time.monotonic()
    try:
        result = runner.run_step(spec["id"], params, progress)
    except Cancelled as err:
        sys.stderr.write(f"\ncancelled: no output was written ({err})\n")
        return 130
    except (ValueError, OSError) as err:
        sys.stderr.write(f"\nerror: {err}\n")
        return 1
    except Exception as err:  # a bug: say what, keep the traceback for whoever asks for it
        if os.environ.get("GLACIER_MAPPER_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"\nerror: internal error in the engine: {type(err).__name__}: {err} (please report it; "
                         "GLACIER_MAPPER_DEBUG=1 prints the details)\n")
        return 1
    finally:
        runner._CURRENT.pop()
    if not args.quiet:
        sys.stderr.write(f"\rdone in {time.monotonic() - started:.1f} s, peak memory "
                         f"{runner.peak_memory_mb():.0f} MB\n")
    if args.json:
        print(json.dumps(result, default=runner._plain, indent=1))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
