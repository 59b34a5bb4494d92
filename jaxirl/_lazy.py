"""Lazy package namespaces: a package's public names import their module on first use.

``jaxirl.irl`` and ``jaxirl.interp`` re-export dozens of names from modules that pull in
SciPy, scikit-learn, pandas and matplotlib (seconds of start-up). A launcher that only
needs one constant, or that stops at a bad flag, should not pay for them; with PEP 562
``__getattr__`` the package imports a submodule only when one of its names is read.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping, Sequence


class _Package(types.ModuleType):
    """A package whose exported name equals one of its submodules' (``jaxirl.irl.ensemble``
    the function, from ``jaxirl.irl.ensemble`` the module): when the import system binds
    the submodule on the package, the function is bound instead, as an eager
    ``from .ensemble import ensemble`` in ``__init__`` would leave it."""

    _shadowed: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._shadowed and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``.

    Args:
      package: the package's ``__name__``.
      exports: submodule name (relative to the package) -> the public names it defines.
    """
    owner = {name: f"{package}.{module}" for module, names in exports.items() for name in names}
    names = sorted(owner)
    shadowed = frozenset(owner) & frozenset(exports)
    if shadowed:
        module = sys.modules[package]
        module.__class__ = _Package
        module.__dict__["_shadowed"] = shadowed

    def __getattr__(name: str) -> object:  # noqa: N807 - the PEP 562 hook
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(owner[name]), name)
        setattr(importlib.import_module(package), name, value)  # later reads skip the hook
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(names) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__, names
