"""Progress of a running chain, read from pyabc's own log records (no database reads per generation)."""
from __future__ import annotations

import logging
import math
import re
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..report import warn

# pyabc's own INFO lines of ABCSMC.run_generation (pyabc 0.13): the generation's threshold, then its result
_GENERATION_START = re.compile(r"^t: (\d+), eps: (\S+?)\.?$")
_GENERATION_DONE = re.compile(r"^Accepted: (\d+) / (\d+) = (\S+), ESS: (\S+?)\.?$")


class GenerationProgress(logging.Handler):
    """Handler on pyabc's "ABC" logger during one chain's run: turns pyabc's records of a generation ("t: T, eps:
    E." when it starts, "Accepted: A / N = R, ESS: S." when it is stored) into our progress line, with no
    database reads; pyabc's warnings become Notes (one line each in the CLI), its other records are dropped."""

    def __init__(self, chain: int, chains: int, mode: str, log: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.chain, self.chains, self.mode, self.log = chain, chains, mode, log
        self.start = time.perf_counter()
        self._t, self._eps = -1, math.nan

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            warn(record.getMessage())  # as a warning: the CLI shows each text once
            return
        if record.funcName != "run_generation":
            return
        text = record.getMessage()
        started = _GENERATION_START.match(text)
        if started:
            self._t, self._eps = int(started.group(1)), float(started.group(2))
            return
        done = _GENERATION_DONE.match(text)
        if done:
            what = "temperature" if self.mode == "likelihood" else "epsilon"
            self.log(f"chain {self.chain + 1}/{self.chains}  generation {self._t}  {what} "
                     f"{self._eps:.4g}  acceptance {float(done.group(3)):.3f}  ESS {float(done.group(4)):.1f}  "
                     f"elapsed {time.perf_counter() - self.start:.1f} s")


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
