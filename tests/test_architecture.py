"""The package's shape, checked: what the study layer loads, module size, and one-way imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xai_lab"
MAX_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path) -> set[str]:
    """Every xai_lab module this one imports, at the top or inside a function (both run)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycles():
    graph = {module: _imports(module, path) for module, path in MODULES.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines; split it by job (limit {MAX_MODULE_LINES})"


def test_study_design_loads_no_torch():
    probe = ("import sys, xai_lab.study.design, xai_lab.study.design_file\n"
             "print(sorted(m for m in ('torch', 'torchvision', 'captum', 'sqlalchemy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_validating_a_design_loads_no_torch():
    probe = ("import sys\nfrom xai_lab.cli import main\n"
             "code = main(['study', 'validate', 'studies/demo.toml'])\n"
             "print(code, 'torch' in sys.modules, 'sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip().splitlines()[-1] == "0 False False"


# Every module a served page or `xai-lab serve` runs, found from the package rather than listed, so a
# new page or screen is guarded the day it is added. The trainer page is the one page that needs a model.
MODEL_PAGES = {"xai_lab.ui.trainer", "xai_lab.ui.page_scripts.trainer"}
SERVED = sorted({name for name in MODULES if name.startswith("xai_lab.ui")} - MODEL_PAGES
                | {"xai_lab.study.catalogue", "xai_lab.study.serve_setup", "xai_lab.cli.serve"})
HEAVY = ("torch", "torchvision", "captum")


def _loaded_heavy(modules: list[str]) -> list[str]:
    probe = (f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])  # noqa: S307 - our own probe's printed list


def test_the_served_path_loads_no_torch_or_captum():
    loaded = _loaded_heavy(SERVED)
    if loaded:  # name the module that pulled them in
        culprits = [name for name in SERVED if _loaded_heavy([name])]
        pytest.fail(f"served modules load {loaded}: {culprits}; import the model code inside the function "
                    "that needs it, or move what the page reads into a module without it")


def test_the_served_modules_list_covers_the_pages():
    assert {"xai_lab.ui.participant", "xai_lab.ui.researcher", "xai_lab.ui.screens.reading",
            "xai_lab.ui.served_app", "xai_lab.ui.page_scripts.participant"} <= set(SERVED)
    assert not MODEL_PAGES & set(SERVED)


def test_tests_import_their_helpers_the_way_a_clean_clone_can():
    """`from support.x` and `from conftest`, never `from tests.x`: pytest puts tests/ on sys.path, not the
    repository root, so `tests.` imports worked in a checkout with an editable install and failed in CI's
    clean clone (stop 33)."""
    offenders = [f"{path.name}:{number}" for path in (PACKAGE.parent / "tests").rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if line.strip().startswith(("from tests.", "import tests."))]
    assert not offenders, offenders
