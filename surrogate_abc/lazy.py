"""Lazy exports of a package (PEP 562): names resolved from their submodule on first use, so importing the
package does not import its heavy submodules."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(module __getattr__, __all__) for `package`, whose name NAME lives in submodule exports[NAME]."""
    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
