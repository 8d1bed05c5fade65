"""pyabc priors from a protocol's priors, checked against the emulator's domain.

Dirichlet priors are refused: pyabc has no joint Dirichlet distribution, and the usual workaround
(independent Gamma variables normalised inside the model) changes the parameter space the user sees.
Use a protocol with uniform or loguniform priors for inference (the Gaussian-mixture toy's weights are
Dirichlet; it is a testbed for emulator training, not for ABC).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..config import Protocol
from ..errors import UserError


def prior_box(protocol: Protocol, overrides: Mapping[str, tuple[float, float]] | None = None) -> dict[str, tuple[str, float, float]]:
    """{name: (kind, low, high)} of the inference prior: the protocol's priors, optionally narrowed by `overrides`."""
    out: dict[str, tuple[str, float, float]] = {}
    for p in protocol.priors:
        if p.kind == "dirichlet":
            raise UserError(f"{protocol.source}: [parameters] {', '.join(p.names)} have a dirichlet prior, which pyabc "
                            "cannot represent; use uniform or loguniform priors for inference")
        out[p.names[0]] = (p.kind, p.low, p.high)
    for name, (lo, hi) in (overrides or {}).items():
        if name not in out:
            raise UserError(f"--prior {name}: unknown parameter; the emulator's parameters are {', '.join(out)}")
        if not lo < hi:
            raise UserError(f"--prior {name}={lo}:{hi}: low must be below high")
        out[name] = (out[name][0], float(lo), float(hi))
    return out


def check_prior_in_domain(box: Mapping[str, tuple[str, float, float]], domain: np.ndarray,
                          param_names: tuple[str, ...], emulator_name: str) -> None:
    """UserError when the prior's support leaves the emulator's domain (it would need extrapolation)."""
    for j, name in enumerate(param_names):
        if name not in box:
            raise UserError(f"prior: parameter {name} of emulator {emulator_name} has no prior")
        _, lo, hi = box[name]
        dlo, dhi = domain[j]
        if lo < dlo - 1e-12 * abs(dlo) or hi > dhi + 1e-12 * abs(dhi):
            raise UserError(f"prior {name} ~ [{lo:.6g}, {hi:.6g}] extends beyond emulator {emulator_name}'s domain "
                            f"[{dlo:.6g}, {dhi:.6g}]; narrow the prior (--prior {name}=LOW:HIGH) to lie inside it")


def sampling_name(name: str, kind: str) -> str:
    """The name pyabc sees: `log10_<name>` for a log-uniform parameter, `<name>` otherwise."""
    return f"log10_{name}" if kind == "loguniform" else name


def pyabc_prior(box: Mapping[str, tuple[str, float, float]]):
    """pyabc.Distribution on the sampling scale: uniform -> RV('uniform', low, high - low) under the parameter's
    name; loguniform -> uniform on [log10 low, log10 high] under `log10_<name>`.

    ABC-SMC perturbs particles with a Gaussian kernel; a parameter whose prior spans decades needs that kernel on
    its log scale, or most proposals land outside the prior and the weights degenerate."""
    import pyabc

    rvs = {}
    for name, (kind, lo, hi) in box.items():
        if kind == "loguniform":
            a, b = np.log10(lo), np.log10(hi)
            rvs[sampling_name(name, kind)] = pyabc.RV("uniform", a, b - a)
        else:
            rvs[name] = pyabc.RV("uniform", lo, hi - lo)
    return pyabc.Distribution(**rvs)


def natural_values(box: Mapping[str, tuple[str, float, float]], values: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    """Parameters on the natural scale, in the order `names`, from pyabc values (a Parameter, a dict of
    floats or a DataFrame of columns) on the sampling scale."""
    cols = []
    for name in names:
        kind = box[name][0]
        v = np.asarray(values[sampling_name(name, kind)], float)
        cols.append(10.0 ** v if kind == "loguniform" else v)
    return np.stack(cols, axis=-1)


def prior_pdf_1d(kind: str, lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    """Marginal prior density on a grid x (for plots)."""
    x = np.asarray(x, float)
    inside = (x >= lo) & (x <= hi)
    if kind == "uniform":
        return np.where(inside, 1.0 / (hi - lo), 0.0)
    return np.where(inside, 1.0 / (np.clip(x, lo, hi) * np.log(hi / lo)), 0.0)
