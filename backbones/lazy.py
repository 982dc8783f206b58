"""Package names imported on first use: ``import backbones`` (or a sub-package) stays cheap, and a page that
needs only the catalog does not pay for torch.

    __getattr__, __dir__ = lazy_exports(__name__, globals(), {"load_model": "backbones.zoo.models", "logme": "logme"})

A module name without a dot is relative to the package. A name is imported once, then kept in the package's
globals like an ordinary import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, namespace: dict, exports: Mapping[str, str]) -> tuple[Callable, Callable]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``exports`` (name -> module)."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
