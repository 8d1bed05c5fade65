"""Read TOML (tomllib) and write the small subset protocol files use (tables, arrays of tables, inline tables,
strings, numbers, booleans, lists): enough to embed a self-contained protocol in every file we write."""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["dumps", "tomllib"]


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _flat(v: Any) -> bool:
    return isinstance(v, Mapping) and not any(isinstance(x, Mapping) or _is_table_array(x) for x in v.values())


def _table(d: Mapping[str, Any], path: list[str], out: list[str], in_array: bool = False) -> None:
    """Write table `d` at `path`: scalars and small flat tables (inside arrays of tables, or three levels
    deep) inline, then sub-tables as [a.b] sections and arrays of tables as [[a.b]] sections."""
    def inline(v: Any) -> bool:
        if _is_table_array(v):
            return len(path) >= 2 and all(_flat(x) for x in v)
        return _flat(v) and (in_array or len(path) >= 2)

    scalars = [(k, v) for k, v in d.items() if not (isinstance(v, Mapping) or _is_table_array(v)) or inline(v)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, Mapping) and not inline(v)]
    arrays = [(k, v) for k, v in d.items() if _is_table_array(v) and not inline(v)]
    for k, v in scalars:
        out.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables:
        if any(not isinstance(x, Mapping) or _flat(x) and len(path) >= 1 for x in v.values()) or not v:
            out.append("")
            out.append(f"[{'.'.join(_key(p) for p in path + [k])}]")
        _table(v, path + [k], out)
    for k, v in arrays:
        for item in v:
            out.append("")
            out.append(f"[[{'.'.join(_key(p) for p in path + [k])}]]")
            _table(item, path + [k], out, in_array=True)


def dumps(d: Mapping[str, Any]) -> str:
    """TOML text that tomllib.loads reads back as `d`."""
    out: list[str] = []
    _table(d, [], out)
    return "\n".join(out).lstrip("\n") + "\n"
