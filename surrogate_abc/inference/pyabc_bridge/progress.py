"""Progress of a running chain, read from pyabc's own log records (no database reads per generation)."""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ...report import warn


class GenerationProgress(logging.Handler):
    """Handler on pyabc's "ABC" logger during one chain's run: turns pyabc's records of a generation (read by
    `compat.generation_record`: its threshold when it starts, its acceptance and ESS when it is stored) into our
    progress line, with no database reads; pyabc's warnings become Notes (one line each in the CLI), its other
    records are dropped. Without `compat` (another pyabc) there are no per-generation lines."""

    def __init__(self, chain: int, chains: int, mode: str, log: Callable[[str], None], compat: Any = None):
        super().__init__(logging.INFO)
        self.chain, self.chains, self.mode, self.log = chain, chains, mode, log
        self.read = None if compat is None else compat.generation_record
        self.start = time.perf_counter()
        self._t, self._eps = -1, math.nan

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            warn(record.getMessage())  # as a warning: the CLI shows each text once
            return
        seen = self.read(record) if self.read is not None else None
        if seen is None:
            return
        kind, a, b = seen
        if kind == "start":
            self._t, self._eps = int(a), b
            return
        what = "temperature" if self.mode == "likelihood" else "epsilon"
        self.log(f"chain {self.chain + 1}/{self.chains}  generation {self._t}  {what} "
                 f"{self._eps:.4g}  acceptance {a:.3f}  ESS {b:.1f}  elapsed {time.perf_counter() - self.start:.1f} s")


@contextmanager
def pyabc_log_to(handler: logging.Handler) -> Iterator[None]:
    """pyabc's log records (logger "ABC" and its children, INFO and up) go to `handler` alone while inside:
    pyabc's own stderr handler is detached and restored afterwards, with the logger's level."""
    logger = logging.getLogger("ABC")
    saved = logger.level, logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[1], saved[2]
        logger.setLevel(saved[0])
