"""The `show` command: a summary table of a binned file and a PNG of example histograms."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..metrics import total_variation
from .edges import bin_centres
from .schema import BINNED_FORMAT, attr_list, attr_str, open_ours

BLOCK_ROWS = 4096


def histogram_means(hist: np.ndarray, edges: list[np.ndarray], integer: bool = True) -> np.ndarray:
    """Mean per set and species (m, n_species) from bin centres (see bin_centres), over the mass inside
    the edges. Rows with no mass inside the edges give NaN.
    """
    h = np.asarray(hist, float)
    out = []
    for axis, e in enumerate(edges):
        centres = bin_centres(e, integer)
        other = tuple(a for a in range(1, h.ndim) if a != axis + 1)
        marg = h.sum(axis=other) if other else h
        tot = marg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(tot > 0, marg @ centres / np.where(tot > 0, tot, 1.0), np.nan))
    return np.stack(out, axis=1)


def example_indices(n: int, k: int) -> np.ndarray:
    """k set indices spread evenly over 0..n-1 (first and last included)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def _stats(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return f"{'n/a':>11} {'n/a':>11} {'n/a':>11}"
    return f"{x.min():>11.4g} {np.median(x):>11.4g} {x.max():>11.4g}"


def _read_compare(path: Path, theta: np.ndarray, idx: np.ndarray, species: list[str], edges: list[np.ndarray]):
    """Histograms of the same parameter sets from another binned file (e.g. SSA against FSP)."""
    with open_ours(path, BINNED_FORMAT, required=("theta", "hist")) as g:
        if attr_list(g, "species") != species or any(
                not np.array_equal(np.asarray(g[f"edges/{s}"][()], float), e) for s, e in zip(species, edges)):
            raise UserError(f"--compare {path}: species or edges differ from the file shown; bin both with the same edges")
        other_theta = np.asarray(g["theta"][()], float)
        if other_theta.shape[0] <= idx.max() or not np.allclose(other_theta[idx], theta[idx], rtol=1e-12):
            raise UserError(f"--compare {path}: its parameter sets differ; simulate both with the same protocol, --n and --seed")
        return np.asarray(g["hist"][idx], float), attr_str(g, "engine")


def show_binned(path: Path, plot: Path | None = None, n_examples: int = 4, compare: Path | None = None) -> str:
    """Summary table of a binned file; writes a PNG of n_examples histograms (default: path with .png).

    With `compare` (another binned file of the same parameter sets, e.g. SSA data against FSP data), the
    PNG shows both per set with their total variation distance, and the table lists the distances.
    """
    from ..plots import plot_comparison, plot_examples  # matplotlib only when needed

    path = Path(path)
    plot = Path(plot) if plot is not None else path.with_suffix(".png")
    if not plot.parent.is_dir():
        raise UserError(f"--plot {plot}: directory {plot.parent} does not exist; create it or choose another path")
    if n_examples <= 0:
        raise UserError(f"--examples must be > 0, got {n_examples}")
    with open_ours(path, BINNED_FORMAT, required=("theta", "hist", "overflow", "tail_mass")) as f:
        species = attr_list(f, "species")
        try:
            edges = [np.asarray(f[f"edges/{s}"][()], float) for s in species]
            names = attr_list(f, "param_names")
            theta = np.asarray(f["theta"][()], float)
            overflow = np.asarray(f["overflow"][()], float)
            tail = np.asarray(f["tail_mass"][()], float)
            n = theta.shape[0]
            integer = attr_str(f, "engine") != "exact"  # the toy's x is continuous; counts are integers
            means = np.concatenate([histogram_means(f["hist"][lo:lo + BLOCK_ROWS], edges, integer)
                                    for lo in range(0, n, BLOCK_ROWS)]) if n else np.zeros((0, len(species)))
            idx = example_indices(n, n_examples)
            examples = np.asarray(f["hist"][idx], float) if n else np.zeros((0,))
        except (OSError, KeyError) as exc:
            raise UserError(f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is damaged; rerun "
                            f"`surrogate-abc bin`") from None
        protocol, network, engine = attr_str(f, "protocol"), attr_str(f, "network"), attr_str(f, "engine")
        samples = int(f.attrs.get("samples", 0))
        source = attr_str(f, "source_file")
    lines = [
        f"{'binned file':<14}{path}",
        f"{'source':<14}{source}",
        f"{'protocol':<14}{protocol} (network {network}, engine {engine}"
        + (f", {samples} samples per set)" if engine == "ssa" else ")"),
        f"{'sets':<14}{n}",
    ]
    for s, e in zip(species, edges):
        lines.append(f"{'species':<14}{s}: {len(e) - 1} bins on [{e[0]:g}, {e[-1]:g})")
    lines.append(f"{'parameter':<14}{'min':>11} {'median':>11} {'max':>11}")
    for j, name in enumerate(names):
        lines.append(f"  {name:<12}{_stats(theta[:, j])}")
    lines.append(f"{'mean count':<14}{'min':>11} {'median':>11} {'max':>11}")
    for j, s in enumerate(species):
        lines.append(f"  {s:<12}{_stats(means[:, j])}")
    if n:
        lines.append(f"{'overflow':<14}mean {overflow.mean():.4g}, max {overflow.max():.4g}")
        lines.append(f"{'tail mass':<14}max {tail.max():.4g}")
        try:
            if compare is not None:
                if len(species) != 1:
                    raise UserError("--compare draws 1-D histograms only")
                other, other_engine = _read_compare(Path(compare), theta, idx, species, edges)
                tv = total_variation(examples, other)
                lines.append(f"{'TV distance':<14}{engine} vs {other_engine}: "
                             + ", ".join(f"{t:.4f}" for t in np.atleast_1d(tv)))
                plot_comparison(plot, species[0], edges[0], examples, other, theta[idx], names,
                                labels=(engine, other_engine), title=f"{protocol}: {engine} against {other_engine}")
            else:
                plot_examples(plot, species, edges, examples, theta[idx], names,
                              title=f"{protocol} ({engine}): {len(idx)} of {n} sets")
        except OSError as exc:
            raise UserError(f"--plot {plot}: cannot write ({exc.strerror or exc}); choose a writable path") from None
        lines.append(f"{'plot':<14}{plot} ({len(idx)} examples)")
    return "\n".join(lines)
