"""The house's rules, checked on the source: module and function sizes, no import cycles,
every name the README documents importable, the earlier flat module paths kept."""

import ast
import importlib
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "lbsgd")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules():
    """{dotted name: path} of every module of lbsgd."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


MODULES = _modules()


def _facade(module: str) -> dict:
    """A package's lazy export table (`_WHERE`) as {name: full module name}."""
    tree = ast.parse(open(MODULES[module]).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_WHERE":
            table = ast.literal_eval(node.value)
            return {k: v if v.startswith("lbsgd.") else f"{module}.{v}" for k, v in table.items()}
    return {}


def _imports_at_load(module: str) -> set:
    """lbsgd modules `module` imports when it is loaded (module level, not inside functions)."""
    tree = ast.parse(open(MODULES[module]).read())
    found = set()
    for node in tree.body:       # top level only: imports inside functions run later
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lbsgd")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lbsgd"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:
                    found.add(sub)
                elif node.module in MODULES and alias.name in _facade(node.module):
                    found.add(_facade(node.module)[alias.name])   # loaded on that use
                else:
                    found.add(node.module)
    return {m for m in found if m in MODULES and m != module}


def test_no_module_over_the_limit_and_no_long_function():
    long_modules = {m: n for m, p in MODULES.items()
                    if (n := len(open(p).read().splitlines())) > MAX_MODULE_LINES}
    long_functions = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name}: {length}")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_the_module_level_imports_have_no_cycle():
    graph = {m: _imports_at_load(m) for m in MODULES}
    state, cycles = {}, []

    def visit(m, trail):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(trail[trail.index(n):] + [n])
            elif n not in state:
                visit(n, trail + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
    # The checker sees real edges: the trainer loads the phase plan, the exchange loads LARS.
    assert "lbsgd.recipe.phases" in graph["lbsgd.run.trainer"]
    assert "lbsgd.optim.lars" in graph["lbsgd.parallel.exchange"]


def test_every_module_says_what_it_is_for():
    missing = [m for m, p in MODULES.items()
               if not (ast.get_docstring(ast.parse(open(p).read())) or "").strip()]
    assert not missing, missing


def _documented_names():
    text = "".join(open(os.path.join(ROOT, f)).read()
                   for f in ("README.md", os.path.join("notebooks", "README.md")))
    names = set(re.findall(r"(?<![\w/.-])lbsgd(?:\.[A-Za-z_]\w*)+", text))
    return sorted(n for n in names if not n.endswith((".py", ".json", ".keras")))


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_name_the_readme_documents_resolves():
    names = _documented_names()
    assert "lbsgd.recipe.RecipePhases" in names and len(names) > 30, names
    unresolved = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError) as err:
            unresolved.append(f"{name}: {err}")
    assert not unresolved, unresolved


def test_every_command_the_readme_runs_has_a_main():
    text = open(os.path.join(ROOT, "README.md")).read()
    commands = set(re.findall(r"python -m (lbsgd\.[a-z_.]+)", text))
    assert {"lbsgd.train", "lbsgd.ensemble", "lbsgd.probe", "lbsgd.scaling"} <= commands
    for name in commands:
        assert callable(getattr(importlib.import_module(name), "main", None)), name


def test_the_public_api_and_the_earlier_module_paths_import():
    import lbsgd

    for name in lbsgd.__all__:
        assert getattr(lbsgd, name) is not None, name
    for old, new in lbsgd.MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from lbsgd import distributed, schedules              # as scripts wrote them before
    assert schedules.GradualWarmup is lbsgd.GradualWarmup
    assert distributed.DistributedOptimizer is lbsgd.DistributedOptimizer
    from lbsgd.ensemble import EnsembleEvaluation         # a command's library names
    assert EnsembleEvaluation is lbsgd.EnsembleEvaluation
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lbsgd.recipe.nothing


def test_importing_lbsgd_and_its_packages_loads_no_tensorflow():
    code = ("import sys, lbsgd, lbsgd.recipe, lbsgd.adaptive, lbsgd.config, lbsgd.run, "
            "lbsgd.parallel, lbsgd.data; lbsgd.TrainConfig; lbsgd.recipe.timing; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
