"""Per-cell capture efficiency (size factors) in the batch method.

Droplet scRNA-seq captures a different fraction of each cell's molecules: cell i is seen with efficiency
beta * s_i, s_i its size factor (its total count over all genes divided by the mean total, or a column the user
gives) and beta the capture efficiency (`--capture`, or the parameter `capture` with `--capture-prior`). A gene's
log-likelihood is then sum_i log p(x_i | theta, beta s_i), each count a binomial thinning with its own
efficiency, applied exactly to the emulated pmf (emulators/capture.py).

A pmf per cell would cost n_cells emulator evaluations per parameter set. Instead the pmf is evaluated at K
efficiency nodes s_1 < ... < s_K, equally spaced in log s over the cells' range, and each cell's log-probability
is interpolated from the STENCIL (6) nodes around log s_i (Lagrange, quintic in log efficiency; fewer nodes: of
lower degree):
log p(x_i | s_i) ~ sum_k w_ik log p(x_i | s_k). Summed over cells this is sum_k sum_c H[k, c] log p_k(c) with
H[k, c] = sum_{i: x_i in bin c} w_ik: a weighted histogram per node, so a gene's likelihood is still one dot
product, over K times the categories, and the shared parameter sets' likelihoods one matrix product.

The error of the interpolation grows with a gene's counts (log p is smooth in log s, its fourth derivative
about the cell's mean count). `choose_nodes` measures it: for test genes (the most expressed and some across the
range of means) at a plausible parameter set each, the node likelihood against the per-cell one (a thinned pmf
at every cell's own efficiency), and takes the fewest nodes whose largest error is at most `tol` nats per gene.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ...emulators.base import EmulatorLike
from ...errors import UserError
from ...metrics import log_probs

if TYPE_CHECKING:
    from ...data.gene_histograms import GeneHistograms
    from .space import ParameterSpace

NODE_CHOICES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # K candidates, fewest first
STENCIL = 6  # nodes per cell's interpolation (Lagrange, degree STENCIL - 1 in log efficiency)
TOL_NATS = 0.01  # largest interpolation error allowed, nats per gene against the per-cell likelihood
CELLS_PER_CALL = 256  # cells per call of the per-cell reference (one full pmf each)


@dataclass(frozen=True)
class EfficiencyNodes:
    """K size-factor nodes, equally spaced in log between the cells' smallest and largest size factor."""

    scales: np.ndarray  # (K,) node size factors

    @classmethod
    def spanning(cls, size_factors: np.ndarray, k: int) -> EfficiencyNodes:
        s = np.asarray(size_factors, float)
        s = s[s > 0]
        lo, hi = float(s.min()), float(s.max())
        if k == 1 or hi <= lo * (1 + 1e-9):
            return cls(np.array([float(np.exp(np.mean(np.log(s))))]))
        return cls(np.exp(np.linspace(np.log(lo), np.log(hi), k)))

    @property
    def k(self) -> int:
        return len(self.scales)

    def weights(self, size_factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nodes (n, m), weights (n, m)) of each cell's interpolation (m = min(K, STENCIL) nodes; weights sum to 1;
        cells with size factor 0 get weight 0 everywhere)."""
        s = np.asarray(size_factors, float)
        n, k = len(s), self.k
        if k == 1:
            return np.zeros((n, 1), np.int64), (s > 0).astype(float)[:, None]
        u = np.log(self.scales)
        h = u[1] - u[0]
        x = (np.log(np.where(s > 0, s, self.scales[0])) - u[0]) / h  # position in node spacings, in [0, K - 1]
        x = np.clip(x, 0.0, k - 1.0)
        m = min(k, STENCIL)
        start = np.clip(np.floor(x).astype(np.int64) - (m // 2 - 1), 0, k - m)
        idx = start[:, None] + np.arange(m)
        t = x[:, None] - idx  # offset from each stencil node
        w = np.ones((n, m))
        for a in range(m):  # Lagrange basis: prod over the other nodes b of (x - x_b) / (x_a - x_b)
            for b in range(m):
                if a != b:
                    w[:, a] *= t[:, b] / (a - b)
        w[s <= 0] = 0.0
        return idx, w


def node_emulators(emulator: EmulatorLike, nodes: EfficiencyNodes | None) -> list[EmulatorLike]:
    """The emulator of the observed counts at each node's efficiency (capture x node size factor)."""
    from ...emulators.capture import CaptureWrapper

    if nodes is None:
        return [emulator]
    if not isinstance(emulator, CaptureWrapper):
        raise UserError("--size-factors needs the capture efficiency: give --capture BETA (the mean cell's, e.g. "
                        "0.1 for droplet data) or --capture-prior LOW:HIGH")
    return [emulator.at_scale(float(s)) for s in nodes.scales]


def count_categories(counts: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """The flat category of each count (cells, T) on one axis' edges (bins, then the overflow), or of each pair of
    counts (cells, T, 2) on two axes' (data/joint_histograms.joint_categories)."""
    from ...data.joint_histograms import joint_categories

    x = np.asarray(counts)
    if len(edges) == 2:
        return joint_categories(x[..., 0], x[..., 1], edges)
    e = np.asarray(edges[0], float)
    return np.minimum(np.searchsorted(e, x, side="right") - 1, len(e) - 1)


def node_histograms(categories: np.ndarray, size_factors: np.ndarray, nodes: EfficiencyNodes,
                    n_categories: int) -> np.ndarray:
    """(T, K, C) node-weighted histograms of each gene's cell categories (cells, T): H[t, k, c] = sum of the
    interpolation weights w_ik of the cells i of category c (the reading pass's, for a few genes held in memory)."""
    cats = np.asarray(categories, np.int64)
    idx, w = nodes.weights(size_factors)
    t = cats.shape[1]
    out = np.zeros(t * nodes.k * n_categories)
    for m in range(idx.shape[1]):
        flat = (np.arange(t)[None, :] * nodes.k + idx[:, m:m + 1]) * n_categories + cats
        out += np.bincount(flat.ravel(), weights=np.repeat(w[:, m], t), minlength=len(out))
    return out.reshape(t, nodes.k, n_categories)


def per_cell_loglik(emulator: EmulatorLike, theta: np.ndarray, categories: np.ndarray,
                    size_factors: np.ndarray) -> float:
    """sum_i log p(c_i | theta, capture x s_i): every kept cell (s_i > 0) at its own efficiency (the reference);
    `categories` (cells,) the cells' flat categories."""
    from ...emulators.capture import CaptureWrapper

    if not isinstance(emulator, CaptureWrapper):
        raise TypeError("per_cell_loglik needs a capture wrapper (CapturedEmulator or RateCapture)")
    s = np.asarray(size_factors, float)
    keep = s > 0
    c, s = np.asarray(categories, np.int64)[keep], s[keep]
    d = len(emulator.inner.param_names)
    th = np.atleast_2d(np.asarray(theta, float))[0]
    beta = float(emulator.capture) if emulator.capture is not None else float(th[d])
    out = 0.0
    for lo in range(0, len(c), CELLS_PER_CALL):
        part = slice(lo, lo + CELLS_PER_CALL)
        rows = np.repeat(th[None, :d], len(c[part]), axis=0)
        p = emulator.flat_probs_at(rows, np.minimum(beta * s[part], 1.0))
        out += float(log_probs(p[np.arange(len(rows)), c[part]]).sum())
    return out


def node_loglik(emulators: Sequence[EmulatorLike], theta: np.ndarray, node_hist: np.ndarray) -> float:
    """sum_k sum_c H[k, c] log p_k(c | theta) of one gene's node histograms (K, C)."""
    th = np.atleast_2d(np.asarray(theta, float))
    out = 0.0
    for em, h in zip(emulators, node_hist):
        probs, over = em.pmf(th)
        flat = np.concatenate([np.asarray(probs).reshape(1, -1), np.asarray(over).reshape(1, 1)], axis=1)
        out += float(log_probs(flat)[0] @ h)
    return out


@dataclass(frozen=True)
class NodeChoice:
    """The nodes chosen, and the largest error (nats per gene) of each number of nodes tried."""

    nodes: EfficiencyNodes
    errors: dict[int, float]
    tol: float

    def line(self) -> str:
        k = self.nodes.k
        ok = self.errors[k] <= self.tol
        return (f"per-cell capture: {k} efficiency node(s), largest error {self.errors[k]:.2g} nats per gene against "
                f"the per-cell likelihood ({'within' if ok else 'above'} {self.tol:g}; tried "
                + ", ".join(f"{n}: {e:.2g}" for n, e in self.errors.items()) + ")")


def choose_nodes(emulator: EmulatorLike, size_factors: np.ndarray, test_categories: np.ndarray,
                 test_theta: np.ndarray, tol: float = TOL_NATS, choices: Sequence[int] = NODE_CHOICES) -> NodeChoice:
    """The fewest nodes whose largest error over the test genes (cell categories (cells, T), one parameter set each
    (T, d)) is at most `tol` nats per gene against the per-cell likelihood; the most nodes tried when none is."""
    t = test_categories.shape[1]
    n_categories = int(np.prod([len(e) - 1 for e in emulator.edges])) + 1  # the bins, then the overflow
    ref = np.array([per_cell_loglik(emulator, test_theta[j], test_categories[:, j], size_factors) for j in range(t)])
    errors: dict[int, float] = {}
    for k in choices:
        nodes = EfficiencyNodes.spanning(size_factors, k)
        ems = node_emulators(emulator, nodes)
        hist = node_histograms(test_categories, size_factors, nodes, n_categories)
        got = np.array([node_loglik(ems, test_theta[j], hist[j]) for j in range(t)])
        errors[k] = float(np.max(np.abs(got - ref))) if len(ref) else 0.0
        if errors[k] <= tol:
            return NodeChoice(nodes, errors, tol)
    return NodeChoice(EfficiencyNodes.spanning(size_factors, choices[-1]), errors, tol)


TEST_GENES = 12  # genes whose node error is measured: the most expressed half, the rest across the means
TEST_SETS = 512  # prior sets searched for each test gene's plausible parameters


def with_size_factors(source: Any, sf: np.ndarray, layer: str | None, emulator: EmulatorLike, space: ParameterSpace,
                      data: GeneHistograms, seed: int, log: Callable[[str], None],
                      cells: np.ndarray | None = None,
                      layers: tuple[str, str] | None = None) -> tuple[GeneHistograms, NodeChoice]:
    """The genes' histograms with per-cell capture: cells with size factor 0 left out, the efficiency nodes
    chosen by their measured error (`choose_nodes` on test genes at their best of TEST_SETS prior sets), the
    node-weighted histograms read in one more pass. `sf`: the cells' size factors (data/size_factors.py). Returns
    (histograms, node choice). `cells`: the mask of the cells read (a group of cells; `sf` is theirs). `layers`:
    the joint (nascent, mature) histograms of two layers instead of one layer's."""
    from ...data.gene_histograms import gene_histograms, read_gene_counts
    from ...data.joint_histograms import joint_gene_histograms, read_layer_counts
    from ...report import warn
    from .likelihood import GeneLikelihoods, full_log_pmf
    from .refine import shared_sets

    if len(sf) != data.n_cells + data.left_out:
        raise UserError(f"--size-factors: {len(sf)} size factors for {data.n_cells} cells")
    n_left = int(np.count_nonzero(sf == 0))
    data = data.without_empty_cells(n_left) if n_left else data
    capture = getattr(emulator, "capture", None)
    high = capture if capture is not None else getattr(emulator, "prior", (0.0, 1.0))[1]
    clipped = int(np.count_nonzero(high * sf > 1.0))
    if clipped:
        warn(f"{clipped} cell(s) have capture x size factor above 1 (up to {high * sf.max():.3g}); their efficiency "
             "is taken as 1: the capture efficiency of the mean cell (--capture / --capture-prior) is too high")
    means = data.mean()
    order = np.argsort(means)[::-1]
    top = order[: TEST_GENES // 2]
    spread = order[np.linspace(0, len(order) - 1, TEST_GENES - len(top)).round().astype(int)]
    test = np.array(sorted(set(top.tolist()) | set(spread.tolist())), dtype=np.int64)
    theta = space.natural(shared_sets(space.box, TEST_SETS, seed))
    ll = GeneLikelihoods(emulator, data.hist[test]).shared(full_log_pmf(emulator, theta))
    best = theta[np.argmax(ll, axis=1)]
    names = [data.genes[i] for i in test]
    counts = (read_layer_counts(source, names, layers, cells) if layers else
              read_gene_counts(source, names, layer, cells))
    choice = choose_nodes(emulator, sf, count_categories(counts, emulator.edges), best)
    log(choice.line())
    idx, w = choice.nodes.weights(sf)
    at = (idx, w, choice.nodes.k)
    nodes = (joint_gene_histograms(source, layers, emulator.edges, list(data.genes), nodes=at, cells=cells)
             if layers else gene_histograms(source, emulator.edges[0], list(data.genes), layer, nodes=at, cells=cells))
    return dataclasses.replace(data, node_hist=nodes.node_hist), choice
