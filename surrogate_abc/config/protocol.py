"""The parsed protocol: priors, histogram axes, solver settings, and the map from free parameters to rates."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError
from ..networks import Network, ReactionNetwork
from ..networks.expressions import evaluate
from ..toml_io import dumps

PRIOR_KINDS = ("uniform", "loguniform", "dirichlet")
TOP_LEVEL_KEYS = {"name", "description", "network", "samples", "parameters", "fixed", "derived", "initial",
                  "histogram", "ssa", "fsp"}


@dataclass(frozen=True)
class Prior:
    """A prior over one parameter (uniform, loguniform) or a block of them (dirichlet)."""

    kind: str
    names: tuple[str, ...]
    low: float = math.nan
    high: float = math.nan
    alpha: tuple[float, ...] = ()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw (n, len(names)) values."""
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size=(n, 1))
        if self.kind == "loguniform":
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=(n, 1)))
        return rng.dirichlet(self.alpha, size=n)

    def bounds(self) -> list[tuple[float, float]]:
        """(low, high) per parameter; the box the prior's support lies in."""
        if self.kind == "dirichlet":
            return [(0.0, 1.0)] * len(self.names)
        return [(self.low, self.high)]

    @property
    def transform(self) -> str:
        """Feature transform emulators use: 'log10' for loguniform, 'identity' otherwise."""
        return "log10" if self.kind == "loguniform" else "identity"


@dataclass(frozen=True)
class Axis:
    """Histogram axis of one observed species: bin edges and the integer support stored by simulate."""

    species: str
    edges: np.ndarray = field(compare=False)
    cap: int | None = None  # counts 0..cap-1 are stored exactly; None for continuous (toy) data

    @property
    def bins(self) -> int:
        return len(self.edges) - 1

    @property
    def count_cap(self) -> int:
        """`cap` of an axis of counts; ValueError for a continuous (toy) axis, which has none."""
        if self.cap is None:
            raise ValueError(f"histogram axis {self.species!r} holds continuous values: it has no count cap")
        return int(self.cap)


@dataclass(frozen=True)
class SSASettings:
    burn_in_intervals: int = 10
    interval: float | None = None  # time between samples; default max(1, ceil(slowest first-order timescale))


@dataclass(frozen=True)
class FSPSettings:
    tol: float = 1e-8
    max_states: int = 2_000_000


@dataclass(frozen=True)
class Protocol:
    """A parsed, validated protocol config."""

    name: str
    network: Network
    priors: tuple[Prior, ...]
    fixed: Mapping[str, float]
    derived: tuple[tuple[str, str], ...]
    initial: tuple[tuple[str, Any], ...]
    samples: int
    axes: tuple[Axis, ...]
    ssa: SSASettings = SSASettings()
    fsp: FSPSettings = FSPSettings()
    description: str = ""
    source: str = "<memory>"
    toml_text: str = field(default="", repr=False, compare=False)

    @property
    def network_toml(self) -> str:
        """The whole [network] table as TOML (empty for closed-form toys). Every file we write stores it next
        to the protocol text, so a file made from a network file or SBML model loads anywhere without them."""
        return dumps({"network": self.network.table()}) if isinstance(self.network, ReactionNetwork) else ""

    @property
    def param_names(self) -> tuple[str, ...]:
        """Free parameter names: the columns of theta."""
        return tuple(n for p in self.priors for n in p.names)

    @property
    def rate_names(self) -> tuple[str, ...]:
        return self.network.rate_names

    @property
    def species(self) -> tuple[str, ...]:
        """Observed species, in histogram axis order."""
        return tuple(a.species for a in self.axes)

    def bounds(self) -> np.ndarray:
        """(d, 2) box of the prior support, in param_names order."""
        return np.array([b for p in self.priors for b in p.bounds()], dtype=float)

    def transforms(self) -> tuple[str, ...]:
        return tuple(p.transform for p in self.priors for _ in p.names)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """Draw theta (n, d) from the prior. Row i depends only on (seed, i): a longer run extends a shorter one."""
        if n <= 0:
            raise ConfigError(f"--n must be a positive number of parameter sets, got {n}")
        cols = [p.sample(np.random.default_rng([seed, j]), n) for j, p in enumerate(self.priors)]
        return np.concatenate(cols, axis=1)

    def namespace(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """All parameters (free, fixed, derived) as arrays of length n."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if theta.shape[1] != len(self.param_names):
            raise ConfigError(
                f"{self.source}: theta has {theta.shape[1]} columns but protocol {self.name} has "
                f"{len(self.param_names)} free parameters ({', '.join(self.param_names)})"
            )
        n = theta.shape[0]
        env: dict[str, np.ndarray] = {k: theta[:, i] for i, k in enumerate(self.param_names)}
        for k, v in self.fixed.items():
            env[k] = np.full(n, float(v))
        for k, expr in self.derived:
            env[k] = np.broadcast_to(evaluate(expr, env), (n,)).astype(float)
        return env

    def rates(self, theta: np.ndarray) -> np.ndarray:
        """The network's rates (n, r) in `rate_names` order; raises ConfigError on NaN/inf/negative."""
        env = self.namespace(theta)
        out = np.stack([env[k] for k in self.rate_names], axis=1)
        positive = self.network.positive
        for j, k in enumerate(self.rate_names):
            col = out[:, j]
            bad = ~np.isfinite(col) | ((col <= 0) if k in positive else np.zeros_like(col, bool))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ConfigError(
                    f"{self.source}: protocol {self.name} gives {k}={col[i]!r} for parameter set {i} "
                    f"({_fmt_row(self.param_names, np.atleast_2d(theta)[i])}); rates must be finite and > 0: "
                    f"check the priors and the [derived] expression for {k}"
                )
        return out

    def initial_state(self, theta: np.ndarray) -> np.ndarray:
        """Initial counts (n, len(network.species)) as int64 (species not listed start at 0)."""
        env = self.namespace(theta)
        n = len(next(iter(env.values()))) if env else 1
        init = dict(self.initial)
        cols = []
        for s in self.network.species:
            v = np.broadcast_to(evaluate(init.get(s, 0), env), (n,))
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise ConfigError(f"{self.source}: [initial] {s} evaluates to an invalid count ({v[~np.isfinite(v) | (v < 0)][0]})")
            cols.append(np.rint(v).astype(np.int64))
        return np.stack(cols, axis=1)


def _fmt_row(names, row) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in zip(names, row))


# --------------------------------------------------------------------------------------- loading
