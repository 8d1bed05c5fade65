"""ExactEmulator: the emulator interface with exactly computed distributions (no neural network).

It implements the emulator contract (`surrogate_abc.emulators.base.EmulatorLike`, shared behaviour in
`EmulatorBase`) so that the inference machinery can be built and tested without a trained model, and it is
the reference for emulator accuracy checks.

* gaussian_mixture toy: exact bin masses by CDF differences (`GaussianMixtureNetwork.bin_probabilities`).
* networks whose observed species has a closed-form law (`surrogate_abc.networks.closed_form`, recognised
  from the reactions), vectorised over parameter sets: Poisson (birth-death) and negative binomial
  (birth-immigration-death, the bursty mRNA model), bin masses by CDF / survival-function differences;
  Beta-Poisson (telegraph mRNA) by the backward ratio recurrence (`beta_poisson_pmf_rows`) summed into bins.
* the two-state gene model observed on (mRNA, protein) (`surrogate_abc.simulate.pgf.match_gene`, recognised
  from the reactions): FSP where its box holds the law (its first box within max_states and the tail mass it
  leaves within tol: ~0.4 s a set at modest counts), else the generating-function law (`simulate.pgf.observed_window`,
  ~4-5 s a set on one core), exact over the whole prior, the bursty corner included, where an FSP box misses mass.
* any other reaction network: the exact FSP solver
  `surrogate_abc.simulate.fsp.solve_stationary`, one parameter set at a time (slow; small problems only).

`ExactEmulator.thinned_flat_probs(theta, beta)` gives the same probabilities for counts binomially thinned
with detection probability beta per set (exactly: the thinned closed-form law, the generating function at
thinned arguments, or `thin_integer_pmf` of the FSP pmf).

Select it on the command line with `surrogate-abc infer DATA --emulator exact:<protocol name or .toml>`;
it is also useful for users with small models whose FSP solution is cheap.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

import numpy as np
from scipy import stats

from ..config import Protocol, load_protocol
from ..errors import UserError
from ..networks import ClosedForm, GaussianMixtureNetwork, ReactionNetwork, find_closed_form
from ..networks.closed_form import LAWS, check_beta, negative_binomial_params
from ..simulate.marginal_bins import binned_beta_poisson
from .base import EmulatorBase


def count_bin_index(edges: np.ndarray, cap: int) -> np.ndarray:
    """Bin index of each integer 0..cap-1 on `edges` (a value k is in bin i when edges[i] <= k < edges[i+1]);
    -1 for integers outside all bins (they belong to the overflow mass)."""
    k = np.arange(cap, dtype=float)
    idx = np.searchsorted(np.asarray(edges, float), k, side="right") - 1
    idx[(k < edges[0]) | (k >= edges[-1])] = -1
    return idx


def bin_integer_pmf(pmf: np.ndarray, edges: tuple[np.ndarray, ...]) -> tuple[np.ndarray, float]:
    """Sum a pmf on the integer grid (1-D (K,) or 2-D (Km, Kp)) into bins; returns (binned, overflow)
    where overflow = 1 - binned.sum() (everything not inside a bin, including mass beyond the grid)."""
    out = pmf
    for ax, e in enumerate(edges):
        idx = count_bin_index(e, out.shape[ax])
        moved = np.moveaxis(out, ax, 0)
        keep = idx >= 0
        binned = np.zeros((len(e) - 1,) + moved.shape[1:])
        np.add.at(binned, idx[keep], moved[keep])
        out = np.moveaxis(binned, 0, ax)
    out = np.clip(out, 0.0, None)
    return out, float(max(1.0 - out.sum(), 0.0))


def thin_integer_pmf(pmf: np.ndarray, beta: Any, size: int | None = None) -> np.ndarray:
    """Binomial thinning of a pmf on the counts 0..K-1: q(k) = sum_n p(n) Binom(k; n, beta), for k = 0..size-1
    (default size = K, where the total is preserved: thinning only lowers counts).

    `pmf` is (K,) or (n, K) (one pmf per row) and beta a scalar or (n,) (one per row), each in [0, 1]. Mass
    beyond the grid, which thinning could bring onto it, is not known here: give a grid that holds it."""
    p = np.asarray(pmf, dtype=float)
    rows = np.atleast_2d(p)
    b = np.broadcast_to(np.asarray(check_beta(beta), dtype=float), (len(rows),))
    b = np.where(b < 1e-300, 0.0, b)  # beta ~ 2e-308 overflows scipy's binomial pmf; below 1e-300 it is 0 to rounding
    K = rows.shape[1]
    size = K if size is None else int(size)
    k = np.arange(size)[None, :]
    out = np.zeros((len(rows), size))
    if len(rows) > 1 and np.all(b == b[0]):  # one kernel for every row
        for lo in range(0, K, 2048):
            n = np.arange(lo, min(lo + 2048, K))[:, None]
            out += rows[:, lo:lo + 2048] @ stats.binom.pmf(k, n, b[0])
        return out.reshape(p.shape[:-1] + (size,))
    for i in range(len(rows)):
        for lo in range(0, K, 2048):  # Binom(k; n, beta) for a block of n: (block, size), 0 where k > n
            n = np.arange(lo, min(lo + 2048, K))[:, None]
            out[i] += rows[i, lo:lo + 2048] @ stats.binom.pmf(k, n, b[i])
    return out.reshape(p.shape[:-1] + (size,))


def _nb_bins(shape: np.ndarray, p: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin masses and overflow of NB(shape, p) (scipy's parametrisation) per row on edges e."""
    k = np.ceil(e)[None, :] - 1
    below = stats.nbinom.cdf(k, shape[:, None], p[:, None])
    above = stats.nbinom.sf(k, shape[:, None], p[:, None])
    return _cdf_bins(below, above)


def _poisson_bins(lam: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin masses and overflow of Poisson(lam) per row on edges e."""
    k = np.ceil(e)[None, :] - 1
    return _cdf_bins(stats.poisson.cdf(k, lam[:, None]), stats.poisson.sf(k, lam[:, None]))


def _cdf_bins(below: np.ndarray, above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin masses from P(X < e_j) (`below`) and P(X >= e_j) (`above`) at each edge: differences of the CDF below
    the median and of the survival function above it keep the tail bins accurate to relative precision."""
    use_sf = below[:, :-1] > 0.5
    probs = np.where(use_sf, above[:, :-1] - above[:, 1:], below[:, 1:] - below[:, :-1])
    probs = np.clip(probs, 0.0, None)
    return probs, below[:, 0] + above[:, -1]


class ExactEmulator(EmulatorBase):
    """Exact bin probabilities of a protocol's observed species (see the module docstring)."""

    def __init__(self, protocol: Protocol, source: str = ""):
        self.protocol = protocol
        self.source = source or f"exact:{protocol.name}"
        self.metadata: dict[str, Any] = {"type": "exact", "protocol": protocol.name}
        net = protocol.network
        self._law = find_closed_form(net, protocol.species) if isinstance(net, ReactionNetwork) else None
        self._gene = None
        if isinstance(net, ReactionNetwork) and self._law is None:
            from ..simulate.pgf import match_gene

            self._gene = match_gene(net, protocol.species)
        if isinstance(net, GaussianMixtureNetwork):
            self._engine = self._pmf_gaussian
        elif self._law is not None:
            self._engine = self._pmf_closed
        elif self._gene is not None:
            self._engine = self._pmf_gene
        else:
            self._engine = self._pmf_fsp

    @property
    def uses_fsp(self) -> bool:
        """True when distributions come from the FSP solver (no closed form, not the gene model)."""
        return self._engine == self._pmf_fsp

    @property
    def solves_each_set(self) -> bool:
        """True when each parameter set is one numerical solve (FSP, or the gene model's generating function):
        seconds per set, so callers spread sets over processes and skip checks that would solve thousands."""
        return self._engine in (self._pmf_fsp, self._pmf_gene)

    @property
    def device(self) -> str:
        return "cpu"

    def to(self, device: Any) -> "ExactEmulator":
        """No-op (exact computations run on the CPU with numpy)."""
        return self

    @property
    def sha256(self) -> str:
        """Hash identifying this emulator: the SHA-256 of the protocol's TOML text."""
        return hashlib.sha256(self.protocol.toml_text.encode()).hexdigest()

    def _flat_probs(self, arr: np.ndarray) -> np.ndarray:
        probs, overflow = self._engine(arr)
        p = np.concatenate([probs.reshape(len(arr), -1), np.asarray(overflow)[:, None]], axis=1)
        p = np.clip(p, 0.0, None)
        return p / p.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ engines
    def _pmf_gaussian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = self.protocol.rates(theta)
        net = self.protocol.network
        assert isinstance(net, GaussianMixtureNetwork)  # the engine of closed-form toys
        return net.bin_probabilities(params, self.edges[0])

    def _caps(self) -> tuple[int, ...]:
        return tuple(int(a.cap) if a.cap is not None else int(math.ceil(a.edges[-1])) for a in self.protocol.axes)

    def _closed_form(self) -> ClosedForm:
        """The closed-form law of the observed species (the closed-form paths run only when there is one)."""
        assert self._law is not None, "no closed-form law is known for this protocol's observed species"
        return self._law

    def _roles(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Each role of the closed-form law as an (n,) array of rate values."""
        rates = self.protocol.rates(theta)
        names = self.protocol.rate_names
        return {role: rates[:, names.index(name)] for role, name in self._closed_form().roles}

    def _closed_bins(self, r: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(n, B) bin masses and (n,) overflow of the closed-form law at role values r (arrays), vectorised."""
        e = self.edges[0]
        law = self._closed_form().law
        if law == "poisson":
            return _poisson_bins(r["birth"] / r["death"], e)
        if law == "negative_binomial":
            shape, p, valid = negative_binomial_params(r)
            n = len(shape)
            probs, overflow = np.zeros((n, len(e) - 1)), np.ones(n)  # l >= m: no stationary law, all beyond
            nb = valid & (r["birth"] > 0)
            if nb.any():
                probs[nb], overflow[nb] = _nb_bins(shape[nb], p[nb], e)
            pois = valid & (r["birth"] == 0)
            if pois.any():
                probs[pois], overflow[pois] = _poisson_bins(r["immigration"][pois] / r["death"][pois], e)
            return probs, overflow
        if law == "beta_poisson":
            return self._beta_poisson_bins(r)
        raise NotImplementedError(f"ExactEmulator: no vectorised bins for the closed-form law {law!r}")

    def _beta_poisson_bins(self, r: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return binned_beta_poisson(r, self.edges[0], self._caps()[0])

    def _pmf_closed(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._closed_bins(self._roles(theta))

    def _rows(self, theta: np.ndarray, beta: np.ndarray | None,
              row: Callable[[dict[str, float], Any], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Binned law and overflow of each parameter set, `row(rate_map, beta_i)` giving its integer pmf."""
        rates = self.protocol.rates(theta)
        probs = np.zeros((len(theta),) + tuple(len(e) - 1 for e in self.edges))
        overflow = np.zeros(len(theta))
        for i, values in enumerate(rates):
            pmf = row(dict(zip(self.protocol.rate_names, values)), None if beta is None else beta[i])
            probs[i], overflow[i] = bin_integer_pmf(pmf, self.edges)
        return probs, overflow

    def _pmf_pgf(self, theta: np.ndarray, beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The gene model's (mRNA, protein) law from its generating function, binned; beta (n, 2) per species."""
        return self._rows(theta, beta, self._pgf_row)

    def _pmf_fsp(self, theta: np.ndarray, beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._rows(theta, beta, lambda rate_map, b: self._fsp_row(rate_map, b)[0])

    def _pmf_gene(self, theta: np.ndarray, beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The gene model's (mRNA, protein): FSP where its box holds the law (~0.4 s a set where counts are
        modest), the generating function where it cannot (~4-5 s a set, exact in the bursty corner too)."""
        return self._rows(theta, beta, self._gene_row)

    def _gene_row(self, rate_map: dict[str, float], b: np.ndarray | None) -> np.ndarray:
        if self.fsp_holds(rate_map):
            pmf, tail = self._fsp_row(rate_map, b)
            if tail <= self.protocol.fsp.tol:
                return pmf
        return self._pgf_row(rate_map, b)

    def fsp_holds(self, rate_map: dict[str, float]) -> bool:
        """Whether FSP's first box (from the exact moments, `fsp_box.initial_box`) fits within max_states: the
        solve then reaches tol unless the law's tail outgrows that box (its tail mass says so afterwards)."""
        from ..simulate.fsp_box import initial_box

        net = self.protocol.network
        assert isinstance(net, ReactionNetwork)  # FSP runs on reaction networks
        return math.prod(initial_box(net, rate_map, self.protocol.fsp.tol)) <= self.protocol.fsp.max_states

    def _pgf_row(self, rate_map: dict[str, float], b: np.ndarray | None) -> np.ndarray:
        from ..simulate.pgf import observed_window

        assert self._gene is not None  # the engine of gene-shaped (mRNA, protein) observations
        beta = (1.0, 1.0) if b is None else tuple(float(x) for x in b)
        return observed_window(self._gene, self.species, rate_map, self._caps(), beta).pmf

    def _fsp_row(self, rate_map: dict[str, float], b: np.ndarray | float | None) -> tuple[np.ndarray, float]:
        """(integer pmf on the caps, FSP's tail mass) of one set; b thins it (per species for a joint law)."""
        try:
            from ..simulate.fsp import solve_stationary
        except ImportError as exc:
            raise UserError(f"emulator {self.source}: the exact FSP solver (surrogate_abc.simulate.fsp) is not "
                            f"available ({exc}); use a trained emulator") from None
        net = self.protocol.network
        assert isinstance(net, ReactionNetwork)  # FSP runs on reaction networks without a closed form
        caps = self._caps()
        res = solve_stationary(net, rate_map, self.species, caps, self.protocol.fsp)
        pmf = np.asarray(res.pmf, float)
        if b is not None and len(caps) > 1:  # a joint law: each axis thinned by its own efficiency
            bv = np.asarray(b, float)
            box = [max(int(t), c) for t, c in zip(res.observed_box, caps)]
            if box != list(caps) and res.overflow > 0:
                pmf = np.asarray(solve_stationary(net, rate_map, self.species, box, self.protocol.fsp).pmf, float)
            for ax, cap in enumerate(caps):
                moved = np.moveaxis(pmf, ax, -1)
                pmf = np.moveaxis(thin_integer_pmf(moved.reshape(-1, moved.shape[-1]), bv[ax], cap)
                                  .reshape(moved.shape[:-1] + (cap,)), -1, ax)
        elif b is not None:
            grid = int(res.observed_box[0])  # the box holds the observed counts below this
            if grid > caps[0] and res.overflow > 0:  # the mass beyond the cap, thinned, lands partly below it
                pmf = np.asarray(solve_stationary(net, rate_map, self.species, [grid], self.protocol.fsp).pmf, float)
            pmf = thin_integer_pmf(pmf, float(b), caps[0])
        return pmf, float(res.tail_mass)

    # ------------------------------------------------------------------ thinned counts
    @property
    def can_thin(self) -> bool:
        """Whether `thinned_flat_probs` applies: count species (one, or a joint law by the FSP)."""
        return not isinstance(self.protocol.network, GaussianMixtureNetwork) and \
            (len(self.edges) == 1 or self._law is None)

    def thinned_flat_probs(self, theta: Any, beta: Any) -> np.ndarray:
        """(n, C) probabilities (bins, then the overflow) of the observed counts binomially thinned with detection
        probability beta[i] for parameter set theta[i] (each molecule seen independently with probability
        beta): exactly the thinned closed-form law where one is known, the gene model's generating function at
        thinned arguments for its (mRNA, protein), otherwise `thin_integer_pmf` of the FSP pmf (its grid grown to
        the FSP truncation so that no mass beyond the cap is lost). theta is checked against the domain like
        `pmf`; beta is (n,) or a scalar, for a joint law also (n, species)."""
        arr = self.check_domain(theta)
        if not self.can_thin:
            raise UserError(f"emulator {self.source}: binomial thinning needs observed count species "
                            f"(protocol {self.protocol.name} has {', '.join(self.species)})")
        if len(self.edges) > 1:  # a joint law: beta (n,) for every species, or (n, species)
            b2 = np.asarray(check_beta(beta), dtype=float).reshape(len(arr) if np.ndim(beta) else 1, -1)
            engine = self._pmf_gene if self._gene is not None else self._pmf_fsp
            probs, overflow = engine(arr, beta=np.broadcast_to(b2, (len(arr), len(self.edges))).copy())
            return np.concatenate([probs.reshape(len(arr), -1), overflow[:, None]], axis=1)
        b = np.broadcast_to(np.asarray(check_beta(beta), dtype=float), (len(arr),)).copy()
        if self._law is not None:
            probs, overflow = self._closed_bins(LAWS[self._law.law].thin(self._roles(arr), b))
        else:
            probs, overflow = self._pmf_fsp(arr, beta=b)
        p = np.concatenate([probs, np.asarray(overflow)[:, None]], axis=1)
        p = np.clip(p, 0.0, None)
        return p / p.sum(axis=1, keepdims=True)


def exact_emulator(spec: str) -> ExactEmulator:
    """ExactEmulator from 'exact:<protocol name or .toml path>' (the prefix is optional)."""
    name = spec[len("exact:"):] if spec.startswith("exact:") else spec
    if not name:
        raise UserError("--emulator exact: needs a protocol, e.g. --emulator exact:configs/gene_protein.toml")
    return ExactEmulator(load_protocol(name), source=f"exact:{name}")
