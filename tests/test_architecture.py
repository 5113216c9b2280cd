"""The rules of the code base as tests (docs/architecture.md explains them).

* Layering: each subpackage imports only from itself, the root modules and the layers below it;
  siblings of one layer never import each other.
* Inside the package, names are imported from their defining module, never through a
  subpackage's ``__init__`` (which only re-exports), so that imports cannot cycle.
* No module imports another subpackage's ``_private`` names (or private modules).
* Every subpackage ``__init__`` defines ``__all__``, and every name in it exists.
* ruff is clean over src, tests and benchmarks.
* Nothing under src/, README.md or docs/ points outside the repository or to issue numbers.
"""
from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "gridcast"

ROOT = "root"  # the shared vocabulary: gridcast/{errors,grid,tracks,metrics,kinds,jsonsafe,safe_files}.py
# Each layer may import from the layers before it; subpackages within one layer never import each other.
LAYERS: list[set[str]] = [
    {ROOT},
    {"ingest", "nn"},
    {"nextcell", "continuous"},
    {"datasets"},
    {"bench", "insight"},
    {"serve"},
    {"cli"},
]
ROOT_MODULES = {"errors", "grid", "tracks", "metrics", "kinds", "jsonsafe", "safe_files"}
# `python -m gridcast` runs the command: the one module of the root that may import the CLI.
ENTRY_POINTS = {"gridcast.__main__": {"cli"}}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module imported from (or imported)
    names: tuple[str, ...]  # the names taken from it ("" for `import x`)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(dotted: str) -> bool:
    return (PACKAGE.parent / dotted.replace(".", "/") / "__init__.py").is_file()


def is_module(dotted: str) -> bool:
    return is_package(dotted) or (PACKAGE.parent / (dotted.replace(".", "/") + ".py")).is_file()


def subpackage(dotted: str) -> str:
    """The layer unit a module belongs to: its first-level subpackage, or ROOT."""
    parts = dotted.split(".")
    if len(parts) >= 2 and is_package(f"gridcast.{parts[1]}"):
        return parts[1]
    return ROOT


def package_imports() -> list[Import]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(importer, a.name, ("",), node.lineno) for a in node.names
                          if a.name.split(".")[0] == "gridcast"]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{importer}:{node.lineno}: relative import (the package imports absolutely)"
                if node.module and node.module.split(".")[0] == "gridcast":
                    found.append(Import(importer, node.module, tuple(a.name for a in node.names), node.lineno))
    return found


IMPORTS = package_imports()


def layer_of(unit: str) -> int:
    (index,) = [i for i, layer in enumerate(LAYERS) if unit in layer]
    return index


def test_every_subpackage_has_a_layer_and_the_root_only_its_modules():
    units = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert units == set().union(*LAYERS) - {ROOT}
    root_files = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert root_files == ROOT_MODULES


def test_layering():
    wrong = []
    for imp in IMPORTS:
        src, dst = subpackage(imp.importer), subpackage(imp.target)
        if src == dst or dst == ROOT or dst in ENTRY_POINTS.get(imp.importer, set()):
            continue
        if layer_of(dst) >= layer_of(src):
            wrong.append(f"{imp.importer}:{imp.line} ({src}) imports {imp.target} ({dst})")
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


def defined_in_init(package: str) -> set[str]:
    """Names a package's ``__init__`` defines itself (``__version__``), as opposed to re-exports."""
    tree = ast.parse((PACKAGE.parent / package.replace(".", "/") / "__init__.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        for target in node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def test_names_come_from_their_defining_module_not_a_subpackage_init():
    """`from gridcast.nextcell import Forecaster` is for users; inside the package it invites cycles."""
    wrong = []
    for imp in IMPORTS:
        if not is_package(imp.target) or imp.target == imp.importer:
            continue
        own = defined_in_init(imp.target)
        for name in imp.names:
            if name == "" or name in own or is_module(f"{imp.target}.{name}"):
                continue  # `import gridcast.x`, a name the __init__ defines, or `from gridcast.x import module`
            wrong.append(f"{imp.importer}:{imp.line} takes {name} from the package {imp.target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_subpackages_private_names():
    wrong = []
    for imp in IMPORTS:
        if subpackage(imp.importer) == subpackage(imp.target):
            continue
        private_module = any(part.startswith("_") and not part.startswith("__") for part in imp.target.split("."))
        private_names = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        if private_module or private_names:
            wrong.append(f"{imp.importer}:{imp.line} imports {imp.target} {private_names or ''}")
    assert not wrong, "\n".join(wrong)


def test_nothing_reaches_into_another_subpackages_private_names_through_a_module_alias():
    """`import gridcast.continuous.model as C` then `C._helper`: the same breach, spelled differently."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("gridcast.") and a.asname:
                        aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gridcast"):
                for a in node.names:
                    if is_module(f"{node.module}.{a.name}"):
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and subpackage(aliases[node.value.id]) != subpackage(importer)):
                wrong.append(f"{importer}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_continuous_and_nextcell_do_not_import_each_other():
    pairs = {(subpackage(i.importer), subpackage(i.target)) for i in IMPORTS}
    assert ("nextcell", "continuous") not in pairs and ("continuous", "nextcell") not in pairs


PACKAGES = sorted(module_name(p.parent) for p in PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_defines_all_and_every_name_exists(name):
    tree = ast.parse((PACKAGE.parent / name.replace(".", "/") / "__init__.py").read_text(encoding="utf-8"))
    assigned = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                and any(isinstance(t, ast.Name) and t.id == "__all__"
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]
    assert assigned, f"{name}/__init__.py defines no __all__"
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: it is part of the test extra (`pip install -e '.[test]'`)")
    done = subprocess.run([ruff, "check", "--no-cache", "src", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# What the repository's own text may not point at: files outside it, and the tracker's issue numbers.
OUTSIDE = [
    (re.compile(r"\.\./shared"), "a path outside the repository"),
    (re.compile(r"\bshared/data\b"), "the benchmark data folder by path (say: the benchmark data folder given with --data)"),
    (re.compile(r"DESIGN\.md|BASELINES\.md|SOURCES?\.md"), "a document outside the repository"),
    (re.compile(r"seed notes", re.I), "notes outside the repository"),
    (re.compile(r"\bissues? #?\d+", re.I), "an issue number"),
]
# README's section on data and licences names where the benchmark data lives.
DATA_SECTION = "## Data and licences"


def repository_text() -> list[tuple[str, str]]:
    files = sorted(PACKAGE.rglob("*.py")) + [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        if path.name == "README.md" and DATA_SECTION in text:
            text = text[: text.index(DATA_SECTION)]
        out.append((str(path.relative_to(REPO)), text))
    return out


def test_nothing_points_outside_the_repository_or_at_issue_numbers():
    wrong = []
    for name, text in repository_text():
        for number, row in enumerate(text.splitlines(), 1):
            for pattern, why in OUTSIDE:
                if pattern.search(row):
                    wrong.append(f"{name}:{number}: {why}: {row.strip()[:100]}")
    assert not wrong, f"{len(wrong)} references:\n" + "\n".join(wrong)


def test_the_code_map_names_every_subpackage_and_module():
    """docs/architecture.md has a line per module: `gridcast.sub` for a subpackage, `module` (or
    `nested.module`, `nested` for a nested package) inside it."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or parts[-1] == "__main__" and len(parts) > 1:
            continue
        name = f"gridcast.{parts[0]}" if len(parts) == 1 and is_package(f"gridcast.{parts[0]}") else ".".join(
            parts[1:] if len(parts) > 1 else parts)
        if f"`{name}`" not in text:
            missing.append(name)
    assert not missing, f"docs/architecture.md's code map lacks: {missing}"
