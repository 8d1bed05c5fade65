"""Everything of `infer` that speaks pyabc, in one place.

* parts.py: the emulator as a pyabc Model, the multinomial likelihood kernel, histogram distances, the observed
  data as pyabc's x_0 (pyabc's public extension points);
* samplers.py: the sampler for --sampler; batched_samplers.py: pyabc Samplers that evaluate the emulator on
  batches of proposals (the fast path);
* densities.py: pyabc's per-particle densities, weights and acceptance, batch-shaped in numpy;
* history.py: a finished chain's ChainResult, read from its History; progress.py: progress lines per generation;
* compat.py: every use of pyabc beyond its public API. It is imported only through `load_compat`, which checks
  it first: with another pyabc release `infer` runs pyabc's own ABCSMC, History and samplers, with a note.
"""
from __future__ import annotations

from types import ModuleType


def load_compat() -> tuple[ModuleType | None, str | None]:
    """(compat module, None) when this pyabc's internals are those the fast path was checked with; else (None, a
    one-line note saying what differs and that pyabc's own path runs instead)."""
    import pyabc

    try:
        from . import compat
    except Exception as exc:  # a private name gone: ImportError; a class reshaped: AttributeError, TypeError
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'on import'}"
    else:
        found = compat.check()
        if found is None:
            return compat, None
        reason = found
    return None, (f"pyabc {pyabc.__version__}: {reason}, so surrogate-abc's fast path (checked with pyabc 0.13) is off; "
                  "running pyabc's own ABC-SMC (the same posterior, slower)")
