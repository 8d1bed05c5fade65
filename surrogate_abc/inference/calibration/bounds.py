"""`calibrate --near-bounds FRACTION`: truths near a bound of the prior, and the table over them (pure functions).

Dataset i puts one parameter near one bound: the parameters in turn (names[i % d]), the low side for the first d
datasets, the high side for the next d, and so on. That parameter is drawn uniformly on the prior's sampling
scale (log10 for log-uniform priors) within the outer FRACTION of its range on that side, seeded by
(seed, index); the others keep their prior draws (Protocol.sample, as in a plain study).

Coverage conditional on a region of the prior is not guaranteed to be nominal even for the exact posterior
(only the average over the whole prior is), so the table is a diagnostic of how the intervals treat a marginal
piled against a bound: a central interval cuts its 5% tail at the bound side too and can miss a truth there,
while an HDI takes the bound in. It also says how often infer's prior_bound flag fired for that parameter.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import UserError
from .stats import HDI_PROB, binomial_band, from_feature, hit_rate, to_feature

SIDES = ("low", "high")
NEAR_SEED = 3  # third element of the (seed, index, k) seeds: 1 draws the cells, 2 the SBC ranks


def check_fraction(fraction: float) -> float:
    """--near-bounds FRACTION as a float in (0, 0.5]; UserError naming the flag otherwise."""
    f = float(fraction)
    if not 0 < f <= 0.5:
        raise UserError(f"--near-bounds {fraction}: must be in (0, 0.5], the outer fraction of each prior range "
                        "a parameter is drawn in (e.g. 0.1)")
    return f


def near_target(index: int, names: Sequence[str]) -> tuple[str, str]:
    """(parameter, side) dataset `index` puts near a bound: parameters in turn, low for a round of them, then high."""
    d = len(names)
    return names[index % d], SIDES[(index // d) % 2]


def near_draw(prior: tuple[str, float, float], side: str, fraction: float, rng: np.random.Generator) -> float:
    """One value uniform on the prior's sampling scale within the outer `fraction` of its range on `side`."""
    kind, lo, hi = prior
    a, b = float(to_feature(kind, lo)), float(to_feature(kind, hi))
    width = fraction * (b - a)
    u = rng.uniform(a, a + width) if side == "low" else rng.uniform(b - width, b)
    return min(max(from_feature(kind, u), lo), hi)  # the back-transform must not step outside by rounding


def near_thetas(thetas: np.ndarray, box: Mapping[str, tuple[str, float, float]], names: Sequence[str],
                fraction: float, seed: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Prior draws `thetas` (n, d; columns `names`) with, in row i, near_target(i)'s parameter redrawn by
    near_draw (generator seeded by (seed, i, NEAR_SEED)); (the new array, [(parameter, side)] per row)."""
    out = np.array(thetas, float, copy=True)
    targets = []
    for i in range(len(out)):
        name, side = near_target(i, names)
        out[i, list(names).index(name)] = near_draw(box[name], side, fraction,
                                                    np.random.default_rng([int(seed), i, NEAR_SEED]))
        targets.append((name, side))
    return out, targets


def flagged_sides(flags: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """{bound_<name>: "low" / "high" / ""} from infer's prior_bound flags (`<name>_low`, `<name>_high`)."""
    out = {f"bound_{k}": "" for k in names}
    for f in flags:
        name, side = f.rsplit("_", 1)
        if name in names:
            out[f"bound_{name}"] = side if not out[f"bound_{name}"] else "both"
    return out


def summarise_near(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The near-bounds table: per parameter, over the datasets that put it near a bound, how many (and on which
    side), the coverage of the 94% HDI and of the 90% central interval with binomial 95% bands for that number,
    the fraction flagged by prior_bound at that side, and the mean contraction; a last row with the posterior
    predictive's mean and max Hellinger distance over all datasets."""
    empty = dict.fromkeys(("near_low", "near_high", "coverage_94", "band94_lo", "band94_hi", "coverage_90",
                           "band90_lo", "band90_hi", "flagged", "contraction", "hellinger_mean", "hellinger_max"), "")
    table = []
    for k in names:
        sub = [r for r in rows if r.get("near_parameter") == k]
        n = len(sub)
        entry: dict[str, Any] = {"parameter": k, "datasets": n, **empty}
        if n:
            b94, b90 = binomial_band(n, HDI_PROB), binomial_band(n, 0.9)
            entry.update({"near_low": sum(r["near_side"] == "low" for r in sub),
                          "near_high": sum(r["near_side"] == "high" for r in sub),
                          "coverage_94": hit_rate(sub, f"in94_{k}"), "band94_lo": b94[0], "band94_hi": b94[1],
                          "coverage_90": hit_rate(sub, f"in90_{k}"), "band90_lo": b90[0], "band90_hi": b90[1],
                          "flagged": hit_rate(sub, "near_flagged"),
                          "contraction": float(np.mean([r[f"contraction_{k}"] for r in sub]))})
        table.append(entry)
    h = np.array([r["hellinger_ppc"] for r in rows])
    table.append({"parameter": "posterior_predictive", "datasets": len(rows), **empty,
                  "hellinger_mean": float(h.mean()), "hellinger_max": float(h.max())})
    return table


def format_near_table(table: list[dict[str, Any]]) -> str:
    """The near-bounds table as aligned text."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v == "" else format(v, fmt)

    lines = [f"{'parameter':<22}{'near (lo/hi)':>13}{'HDI 94%':>9}{'band 95%':>14}{'cover 90%':>10}{'band 95%':>14}"
             f"{'flagged':>9}{'contraction':>13}"]
    for r in table:
        if r["parameter"] == "posterior_predictive":
            lines.append(f"{r['parameter']:<22}Hellinger to the exact law {r['hellinger_mean']:.4f} (mean over "
                         f"{r['datasets']} datasets; max {r['hellinger_max']:.4f})")
            continue
        if not r["datasets"]:
            lines.append(f"{r['parameter']:<22}{'0':>13}  (no dataset put it near a bound: more --datasets)")
            continue
        near = f"{r['datasets']} ({r['near_low']}/{r['near_high']})"
        band94 = f"[{r['band94_lo']:.2f}, {r['band94_hi']:.2f}]"
        band90 = f"[{r['band90_lo']:.2f}, {r['band90_hi']:.2f}]"
        lines.append(f"{r['parameter']:<22}{near:>13}{num(r['coverage_94'], '.3f'):>9}{band94:>14}"
                     f"{num(r['coverage_90'], '.3f'):>10}{band90:>14}{num(r['flagged'], '.3f'):>9}"
                     f"{r['contraction']:>13.3f}")
    return "\n".join(lines)
