"""Lazy package exports: a name loads its module on first use, so importing lbsgd loads no TensorFlow.

Every package's `__init__` (and `lbsgd` itself) lists where its public names
live; :func:`lazy` turns that table into the module `__getattr__`/`__dir__`.
A submodule is reachable as an attribute too (`lbsgd.recipe.schedules`).
"""

from __future__ import annotations

import importlib


def lazy(package: str, where: dict[str, str]):
    """(`__getattr__`, `__dir__`) for `package` whose names live in modules `where[name]`.

    A module is named relative to the package (`"schedules"`) or in full
    (`"lbsgd.optim.decay"`).
    """

    def resolve(module: str) -> str:
        return module if module.startswith("lbsgd.") else f"{package}.{module}"

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(resolve(where[name])), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(where) | {"__doc__", "__name__", "__path__"})

    return __getattr__, __dir__
