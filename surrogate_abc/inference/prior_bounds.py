"""Which parameters' posteriors pile against a bound of the prior, for one data set (`infer`'s summary).

A truth at (or beyond) a prior bound is common: a gene whose promoter is nearly always on drives k0 to its upper
bound. The posterior then has its mode at the bound, and its interval is really a one-sided statement (k0 at
least the interval's low end, as far as the prior lets it go). The rule is the batch method's
(transcriptome/checks.bound_flags: an informative posterior whose density at the bound is at least 0.9 of its
peak), on the prior's sampling scale (log for log-uniform priors), over the equal-weight posterior draws.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .transcriptome.checks import bound_flags


def prior_bound_flags(idata: Any, box: Mapping[str, tuple[str, float, float]]) -> list[str]:
    """`<name>_low` / `<name>_high` for each parameter of the posterior group whose draws pile against that bound
    of `box` (the run's prior: {name: (kind, low, high)}, priors.prior_box), on its sampling scale."""
    names = tuple(n for n in box if n in idata.posterior.data_vars)
    if not names:
        return []
    z = np.stack([np.asarray(idata.posterior[n], float).ravel() for n in names], axis=1)
    low = np.array([box[n][1] for n in names], float)
    high = np.array([box[n][2] for n in names], float)
    logs = np.array([box[n][0] == "loguniform" for n in names])
    z[:, logs] = np.log(np.maximum(z[:, logs], 1e-300))
    low[logs], high[logs] = np.log(low[logs]), np.log(high[logs])
    w = np.full(len(z), 1.0 / max(len(z), 1))
    return bound_flags(z, w, low, high, names)


def bound_lines(flags: list[str], box: Mapping[str, tuple[str, float, float]]) -> list[str]:
    """One line per flag for the summary: which bound, what the interval then means, and the fix."""
    out = []
    for f in flags:
        name, side = f.rsplit("_", 1)
        _, lo, hi = box[name]
        value = hi if side == "high" else lo
        reading = "a lower bound" if side == "high" else "an upper bound"
        out.append(f"{name}: the posterior piles against the prior's {'upper' if side == 'high' else 'lower'} "
                   f"bound {value:g}; the data want {name} there or beyond it, so read its interval as {reading} "
                   f"(or widen the prior: --prior {name}=LOW:HIGH, within the emulator's range)")
    return out
