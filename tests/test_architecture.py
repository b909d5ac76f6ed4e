"""The one-way rule of the package, read from the source with `ast` (README: Architecture).

core: change -> segmentation -> imagery -> common, massbalance -> common; core never imports
engine, algorithms or qgis. The engine runs core and never imports algorithms or qgis.
algorithms reach the science through the engine: whatever they import from the package
outside algorithms/ (and everything that imports in turn) needs the standard library only,
so QGIS's process never loads numpy 2, torch or rasterio of the engine.
"""
import ast
import shutil
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "glacier_mapper_plugin"
DOMAINS = ("imagery", "segmentation", "change", "massbalance")
# What each layer may import from the package (itself included).
ALLOWED = {
    "common": {"common"},
    "imagery": {"imagery", "common"},
    "segmentation": {"segmentation", "imagery", "common"},
    "change": {"change", "segmentation", "imagery", "common"},
    "massbalance": {"massbalance", "common"},
    "engine": {"engine", "common", *DOMAINS},
    "algorithms": {"algorithms", "engine", "common", *DOMAINS},  # narrowed by the closure test
    "plugin": {"plugin", "algorithms"},
}
QGIS_MODULES = ("qgis", "processing", "PyQt5", "PyQt6", "sip", "osgeo")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(path: Path, root: Path):
    """(line, absolute module name) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, root)
    package = here if is_package(path) else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if source_of(sub, root) is not None else target


def source_of(module: str, root: Path) -> Path | None:
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    path = root.parent.joinpath(*parts)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def layer(module: str, root: Path) -> str:
    parts = module.split(".")
    if parts[0] in QGIS_MODULES:
        return "qgis"
    if parts[0] != root.name:
        return "external"
    if len(parts) == 1 or parts[1] in ("plugin", "provider"):
        return "plugin"
    if parts[1] == "core":
        return parts[2] if len(parts) > 2 and parts[2] in DOMAINS else "common"
    return parts[1]  # engine, algorithms


def layer_violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        here = layer(module_name(path, root), root)
        for line, target in imports(path, root):
            there = layer(target, root)
            if there == "external":
                continue
            if there == "qgis":
                if here not in ("algorithms", "plugin"):
                    out.append(f"{path.relative_to(root.parent)}:{line}: {here} imports {target} (QGIS)")
            elif there not in ALLOWED[here]:
                out.append(f"{path.relative_to(root.parent)}:{line}: {here} imports {target} ({there})")
    return out


def qgis_side_violations(root: Path = PACKAGE) -> list[str]:
    """Modules that QGIS's process imports (algorithms/ and everything they import from the
    package, transitively) that import anything beyond the standard library and QGIS."""
    todo = [p for p in (root / "algorithms").rglob("*.py")]
    todo += [root / "__init__.py", root / "plugin.py", root / "provider.py"]
    seen, out = set(), []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = module_name(path, root)
        parents = [source_of(".".join(name.split(".")[:k]), root) for k in range(1, len(name.split(".")))]
        todo += [p for p in parents if p is not None]  # importing a module runs its packages too
        for line, target in imports(path, root):
            top = target.split(".")[0]
            source = source_of(target, root)
            if source is not None:
                todo.append(source)
            elif top != root.name and top not in QGIS_MODULES and top not in sys.stdlib_module_names:
                out.append(f"{path.relative_to(root.parent)}:{line}: imports {target}, which QGIS does not "
                           "ship (QGIS's process must reach the science only through the engine)")
    return out


def test_core_has_one_way_down():
    found = layer_violations()
    assert not found, "imports against the one-way rule:\n" + "\n".join(found)


def test_qgis_side_needs_only_the_standard_library():
    found = qgis_side_violations()
    assert not found, "\n".join(found)


def test_every_core_module_sits_in_a_domain_or_the_common_floor():
    floor = {"__init__", "io", "vector", "labels", "geodesy", "identity", "inventories", "progress", "cluster",
             "html_report"}
    loose = sorted(p.stem for p in (PACKAGE / "core").glob("*.py") if p.stem not in floor)
    assert not loose, f"core/ modules outside the domains and the common floor: {loose}"
    for domain in DOMAINS:
        doc = ast.get_docstring(ast.parse((PACKAGE / "core" / domain / "__init__.py").read_text()))
        assert doc and "import" in doc, f"core/{domain}/__init__.py must say what the domain may import"


@pytest.mark.parametrize("where, line, expected", [
    ("core/imagery/bands.py", "from ..segmentation import metrics\n", "imagery imports glacier_mapper_plugin.core.segmentation.metrics"),
    ("core/labels.py", "    from .imagery import sentinel2\n", "common imports glacier_mapper_plugin.core.imagery.sentinel2"),
    ("core/massbalance/model.py", "from ..change.report import write_report\n", "massbalance imports"),
    ("core/io.py", "from ..engine import runner\n", "common imports glacier_mapper_plugin.engine.runner"),
    ("engine/runner.py", "from qgis.core import QgsApplication\n", "engine imports qgis.core (QGIS)"),
    ("core/segmentation/segment.py", "import glacier_mapper_plugin.algorithms.base\n", "segmentation imports glacier_mapper_plugin.algorithms.base"),
])
def test_the_rule_catches_an_upward_or_sideways_import(tmp_path, where, line, expected):
    root = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / where
    text = target.read_text()
    if line.startswith(" "):  # a lazy import inside a function counts as much as one at the top
        line = "def _planted():\n" + line
    target.write_text(text + "\n" + line)
    found = layer_violations(root)
    assert any(where in f and expected in f for f in found), found


def test_the_qgis_side_rule_catches_an_engine_package(tmp_path):
    root = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "core" / "imagery" / "catalogs.py").write_text(
        (root / "core" / "imagery" / "catalogs.py").read_text() + "\nimport numpy\n")
    found = qgis_side_violations(root)
    assert any("core/imagery/catalogs.py" in f and "numpy" in f for f in found), found
