"""The shape of the code: import layers without circles, short functions, one exit code
for user errors in every command."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_app

# Lowest first. A module may import modules of its own layer or of a lower one, never higher.
LAYERS = [
    ("core", ["llm_sweep.core"]),
    ("building blocks", ["llm_sweep.models", "llm_sweep.optim", "llm_sweep.data", "llm_sweep.hardware",
                         "llm_sweep.scaling"]),
    ("training", ["llm_sweep.training"]),
    ("services", ["llm_sweep.tracking", "llm_sweep.sweeping", "llm_sweep.bench", "llm_sweep.plan",
                  "llm_sweep.report", "llm_sweep.coordcheck", "llm_sweep.design", "hydra_plugins"]),
    ("entry points", ["llm_sweep.job", "llm_sweep.__main__", "llm_sweep.bench.cli", "llm_sweep.bench.__main__",
                      "llm_sweep.plan.cli", "llm_sweep.plan.__main__", "llm_sweep.report.cli",
                      "llm_sweep.report.__main__", "llm_sweep.coordcheck.cli", "llm_sweep.coordcheck.__main__",
                      "llm_sweep.design.cli", "llm_sweep.design.__main__", "llm_sweep.design.calibrate",
                      "llm_sweep.export", "llm_sweep.prepare", "llm_sweep"]),
]
PACKAGES = ("llm_sweep", "hydra_plugins")
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Our modules that `path` imports anywhere in it (functions and TYPE_CHECKING included):
    `from a.b import c` counts as a.b.c when that is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                     else node.module for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def layer_of(module: str) -> int:
    """The layer of the module or package named in LAYERS that holds `module` (the root
    package `llm_sweep` names only its own __init__)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != "llm_sweep"
            if (module == prefix or inside) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def test_every_module_is_in_a_layer_and_imports_only_downwards(graph):
    upward = [f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
              for src, targets in graph.items() for dst in sorted(targets)
              if layer_of(dst) > layer_of(src)]
    assert upward == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the import circles, each as the modules on it."""
    sys.setrecursionlimit(10_000)
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles(graph):
    assert strongly_connected(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_is_longer_than_a_screen():
    long = []
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


def test_nothing_imports_the_job_but_the_entry_point(graph):
    importers = sorted(src for src, targets in graph.items() if "llm_sweep.job" in targets)
    assert importers == ["llm_sweep.__main__"]


# --- every command: a user error is one line and exit code 2 ---------------------------------

COMMAND_ERRORS = [
    ("llm_sweep", ["model.n_head=3", "tracking=none", "hydra.run.dir=run"], "model.n_head=3"),
    ("llm_sweep.bench", ["bench.modes=[eager-fp16]", "tracking=none", "hydra.run.dir=run"], "eager-fp16"),
    ("llm_sweep.prepare", ["data=text"], "data.paths"),
    ("llm_sweep.plan", ["--presets", "huge"], "no preset huge"),
    ("llm_sweep.design", ["--budgets", "1e12,4e12", "--noise", "loud"], "--noise"),
    ("llm_sweep.report", ["--experiment", "none"], "no MLflow store"),
    ("llm_sweep.export", ["missing.pt", "hf_out"], "missing.pt"),
    ("llm_sweep.coordcheck", ["coordcheck.parametrizations=[ntk]", "hydra.run.dir=run"], "coordcheck.parametrizations"),
]


@pytest.mark.slow
@pytest.mark.parametrize("module, args, named", COMMAND_ERRORS, ids=[c[0] for c in COMMAND_ERRORS])
def test_every_command_reports_a_user_error_in_one_line_with_exit_code_2(tmp_path, module, args, named):
    result = run_app(args, cwd=tmp_path, module=module, timeout=120,
                     env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and named in last
    assert "Traceback" not in result.stderr


# --- plain imports: the call graph is what the files say --------------------------------------

def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import inside a function that no comment explains: one on its
    line, or one just above the run of imports it belongs to."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                above = inner.lineno - 2
                while lines[above].strip().startswith(("from ", "import ")):
                    above -= 1
                if "#" not in lines[inner.lineno - 1] and not lines[above].strip().startswith("#"):
                    found.append((inner.lineno, lines[inner.lineno - 1].strip()))
    return found


def test_every_function_level_import_says_why():
    unexplained = [f"{path.relative_to(REPO)}:{line}: {text}" for path in module_files().values()
                   for line, text in function_level_imports(path)]
    assert unexplained == []


def test_no_lazy_package_fronts_and_no_hydra_internals():
    for name, path in module_files().items():
        text = path.read_text()
        assert "def __getattr__" not in text, f"{name}: a lazy package front"
        assert "hydra._internal" not in text, f"{name}: Hydra's internals"
        assert "sys.modules[" not in text and "sys.modules.get(" not in text, f"{name}: looks a module up at run time"


def test_no_module_imports_another_packages_private_module(graph):
    private = [f"{src} imports {dst}" for src, targets in graph.items() for dst in targets
               if dst.rsplit(".", 1)[-1].startswith("_") and not dst.endswith("__main__")
               and dst.rsplit(".", 1)[0] != src.rsplit(".", 1)[0]]
    assert private == []


def test_the_core_imports_no_torch():
    core = sorted(name for name in module_files() if name.startswith("llm_sweep.core"))
    code = f"import sys; import {', '.join(core)}; print(sorted(m for m in ('torch', 'numpy', 'mlflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['numpy']" or done.stdout.strip() == "[]", done.stdout
    assert "torch" not in done.stdout


def test_only_the_console_prints():
    printing = [name for name, path in module_files().items()
                if name != "llm_sweep.core.console" and re.search(r"\bprint\(", path.read_text())]
    assert printing == []


def test_every_llm_sweep_import_in_the_docs_and_scripts_resolves():
    """The imports that README, docs/ and benchmarks/ show users name modules and names that exist."""
    sources = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "benchmarks").glob("*.py"))]
    imports = sorted({(str(path.relative_to(REPO)), f"from {module} import {names}") for path in sources
                      for module, names in re.findall(r"^\s*from (llm_sweep[\w.]*) import ([\w, ]+)$",
                                                      path.read_text(), re.M)})
    assert len(imports) >= 3
    check = ("import sys\nfor where, code in %r:\n    try:\n        exec(code)\n"
             "    except Exception as exc:\n        print(where, code, exc)" % imports)
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr[-2000:]
