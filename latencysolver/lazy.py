"""Package attributes imported on first use (PEP 562): importing a package, or one light module of it, does not
import what only its other modules need (torch, scipy.stats).  A package's ``__init__`` keeps its names for type
checkers under ``if TYPE_CHECKING:`` and sets ``__getattr__ = lazy_attributes(__name__, {name: module, ...})``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``homes[name]`` (a module's full name) on the first use of ``name``."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
