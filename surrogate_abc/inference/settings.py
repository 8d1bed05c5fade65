"""The options of `infer` and `calibrate`, grouped by concern and stated once.

Each option is one dataclass field: its default, its type and, for options of the command line, its flag and help
text (the field's metadata). `cli.py` builds its argparse options from them (`add_options`), `api.py` passes
keyword arguments by these names, and `InferenceSettings(**flat)` routes each name to its group, so an option
is named, defaulted and documented in this file alone.

* `Algorithm`: the ABC-SMC itself (what changes the posterior's law);
* `Execution`: where the chains run (the posterior does not depend on it);
* `ExactFollowups`: the exact model after the run (the check and the reweighting);
* `plots`: the PNGs.

This module imports neither pyabc nor torch.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from ..argtypes import positive_int, prior_override
from ..errors import UserError
from ..metrics import HISTOGRAM_DISTANCES

HDI_PROB = 0.94  # the summary's highest-density interval (arviz's default hdi_prob: columns hdi_3%, hdi_97%)

MODES = ("likelihood", "simulator")
SAMPLERS = ("single", "multicore", "dask", "redis")


def option(default: Any, help: str, *, flag: str | None = None, type: Callable[[str], Any] | None = None,
           choices: tuple[str, ...] | None = None, metavar: str | None = None, **kw: Any) -> Any:
    """A settings field that is also a command-line option (`--NAME` unless `flag` says otherwise)."""
    meta = {"help": help, "flag": flag, "type": type, "choices": choices, "metavar": metavar}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class Algorithm:
    """The ABC-SMC: its mode, population, stopping rules, chains and seed, and the prior."""

    mode: str = option("likelihood", "likelihood: exact ABC with the emulated log-likelihood; simulator: "
                       "synthetic histograms + distance", choices=MODES)
    distance: str = option("hellinger", "histogram distance in simulator mode", choices=tuple(HISTOGRAM_DISTANCES))
    population: int = option(500, "particles per generation", type=positive_int)
    generations: int = option(10, "maximum number of generations", type=positive_int)
    min_epsilon: float | None = option(None, "stop when epsilon (temperature) reaches this", type=float)
    max_walltime: float | None = option(None, "seconds per chain", type=float)
    min_acceptance_rate: float = option(1e-3, "stop a chain when a generation's acceptance rate falls below this "
                                        "(bounds its proposals to population / rate; default 1e-3; 0: never)",
                                        type=float)
    chains: int = option(1, "independent ABC-SMC runs (seeds SEED, SEED+1, ...)", type=positive_int)
    seed: int = option(0, "random seed: chain c uses SEED + c; the batch method's draws derive from it", type=int)
    prior: Mapping[str, tuple[float, float]] = option(
        {}, "narrow a parameter's prior (must stay inside the emulator's domain); repeatable", type=prior_override,
        metavar="NAME=LOW:HIGH")
    fast: bool = True  # batched densities, weights and History writes (pyabc_bridge); False: pyabc's own

    def check(self) -> None:
        """UserError on inconsistent options."""
        if self.mode not in MODES:
            raise UserError(f"--mode {self.mode!r}: use likelihood or simulator")
        if self.distance not in HISTOGRAM_DISTANCES:
            raise UserError(f"--distance {self.distance!r}: use one of {', '.join(HISTOGRAM_DISTANCES)}")
        if not 0.0 <= self.min_acceptance_rate < 1.0:
            raise UserError(f"--min-acceptance-rate must be in [0, 1), got {self.min_acceptance_rate:g}")
        for name, v in (("--population", self.population), ("--generations", self.generations),
                        ("--chains", self.chains)):
            if v < 1:
                raise UserError(f"{name} must be >= 1, got {v}")


@dataclass(frozen=True)
class Execution:
    """Where the chains run: the sampler and its cluster, and how many chains at once."""

    sampler: str = option("single", "single (default): one process, the emulator evaluated on batches of proposals "
                          "(fastest on a laptop); multicore: pyabc's per-particle sampler on --n-procs processes; "
                          "dask/redis: a cluster", choices=SAMPLERS)
    n_procs: int | None = option(None, "multicore: processes (default: all cores)", type=positive_int)
    scheduler_address: str | None = option(None, "dask: scheduler address, e.g. tcp://host:8786")
    redis_host: str = option("localhost", "redis: the server's host")
    redis_port: int = option(6379, "redis: the server's port", type=int)
    chain_jobs: int | None = None  # chains run at once (forked processes; default: the cores)

    def check(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"--sampler {self.sampler!r}: use single, multicore, dask or redis")


@dataclass(frozen=True)
class ExactFollowups:
    """After the run, the exact model (closed form or FSP) where there is one."""

    exact_check: str = option("exact", "exact (default where an exact engine exists): after the run, the emulator "
                              "against the exact model (closed form or FSP) at 50 posterior draws: H2, KLD and the "
                              "log-likelihood difference", flag="--check", choices=("exact", "none"))
    check_budget: float = option(60.0, "skip the exact check (with a note) when it would take longer than this "
                                 "(default 60)", type=float, metavar="SECONDS")
    reweight: str = option("none", "exact: importance-reweight the final populations to the exact likelihood (group "
                           "posterior_exact, summary_exact.csv); the emulator then only proposes",
                           choices=("exact", "none"))

    def check(self) -> None:
        if self.exact_check not in ("exact", "none"):
            raise UserError(f"--check {self.exact_check!r}: use exact or none")
        if self.reweight not in ("exact", "none"):
            raise UserError(f"--reweight {self.reweight!r}: use exact or none")
        if not self.check_budget > 0:
            raise UserError(f"--check-budget must be > 0 seconds, got {self.check_budget:g}")


GROUPS: dict[str, type] = {"algorithm": Algorithm, "execution": Execution, "exact": ExactFollowups}


def _group_of(name: str) -> str:
    for group, cls in GROUPS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return group
    raise TypeError(f"unknown inference setting {name!r}; the settings are {', '.join(sorted(setting_names()))}")


def setting_names() -> list[str]:
    """Every flat setting name (the keyword arguments of InferenceSettings and of sa.infer)."""
    return [f.name for cls in GROUPS.values() for f in dataclasses.fields(cls)] + ["plots"]


@dataclass(frozen=True, init=False)
class InferenceSettings:
    """The options of `surrogate-abc infer`, by concern. Built from groups or from flat names
    (`InferenceSettings(population=800, sampler="multicore")`: each name goes to its group)."""

    algorithm: Algorithm
    execution: Execution
    exact: ExactFollowups
    plots: bool  # draw marginals.png, pair.png, ppc.png (`surrogate-abc report` draws them later)

    def __init__(self, algorithm: Algorithm | None = None, execution: Execution | None = None,
                 exact: ExactFollowups | None = None, plots: bool = True, **flat: Any):
        parts: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for name, value in flat.items():
            parts[_group_of(name)][name] = value
        given = {"algorithm": algorithm, "execution": execution, "exact": exact}
        for group, cls in GROUPS.items():
            base = given[group] or cls()
            object.__setattr__(self, group, dataclasses.replace(base, **parts[group]) if parts[group] else base)
        object.__setattr__(self, "plots", bool(plots))

    def replace(self, **flat: Any) -> "InferenceSettings":
        """A copy with some settings changed (flat names)."""
        return InferenceSettings(self.algorithm, self.execution, self.exact, flat.pop("plots", self.plots), **flat)

    def check(self) -> None:
        """UserError on inconsistent options."""
        self.algorithm.check()
        self.execution.check()
        self.exact.check()

    def flat(self) -> dict[str, Any]:
        """{name: value} of every setting."""
        out = {f.name: getattr(getattr(self, g), f.name) for g in GROUPS for f in dataclasses.fields(GROUPS[g])}
        return {**out, "plots": self.plots}


# ----------------------------------------------------------------------------------- command line
def cli_fields(cls: type) -> Iterator[dataclasses.Field]:
    """The fields of a settings group that are command-line options."""
    return (f for f in dataclasses.fields(cls) if "help" in f.metadata)


def add_options(parser: argparse.ArgumentParser, cls: type, defaults: Mapping[str, Any] | None = None,
                only: tuple[str, ...] | None = None) -> None:
    """Add a settings group's options to an argparse parser (`defaults` overrides a field's default for this
    command, e.g. calibrate's smaller population; `only` keeps some of them)."""
    for f in cli_fields(cls):
        if only is not None and f.name not in only:
            continue
        m = f.metadata
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        text = m["help"] if "default" in m["help"] or default is None or default is False else f"{m['help']} (default {default})"
        kw: dict[str, Any] = {"dest": f.name, "help": text}
        if m["type"] is prior_override:
            kw.update(type=prior_override, action="append", metavar=m["metavar"], default=None)
        else:
            kw.update(default=default)
            for key in ("type", "choices", "metavar"):
                if m[key] is not None:
                    kw[key] = m[key]
        parser.add_argument(m["flag"] or "--" + f.name.replace("_", "-"), **kw)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """A settings group from parsed command-line options (those the parser has) and `extra` fields."""
    values: dict[str, Any] = {}
    for f in cli_fields(cls):
        if hasattr(args, f.name):
            v = getattr(args, f.name)
            values[f.name] = dict(v or []) if f.metadata["type"] is prior_override else v
    return cls(**{**values, **extra})
