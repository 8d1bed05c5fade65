"""Exact (mRNA, protein) window pmf of the two-state gene model from its stationary generating function.

The network: a promoter switching off -> on (k0) and on -> off (k1), mRNA made at v0 while on and lost at
d0 per molecule, protein made at v1 per mRNA and lost at d1 per molecule; nothing feeds back. Recognised from
its structure (`match_gene`), never its name. Being linear, its stationary joint generating function
G(z, w) = sum P(m, p) z^m w^p follows from one mRNA's generating function F(a; z, w) at age a (closed form up
to one smooth integral) and a 2-state Feynman-Kac equation over the promoter's age-reversed path
(pgf_kernel.py); P(m, p) on the window m < M, p < P is the damped 2-D discrete Fourier inversion

    P(m, p) = r_m^-m r_p^-p / (N_m N_p) sum_jk G(r_m e^(2 pi i j/N_m), r_p e^(2 pi i k/N_p)) e^-(2 pi i (jm/N_m + kp/N_p))

(half the w circle by G(conj z, conj w) = conj G). Its error has three parts, each estimated in `error`:
* aliasing: sum over (i, k) != 0 of r^(iN) P(m + i N_m, p + k N_p) <= rho_m t_m / (1 - rho_m) + rho_p t_p / (1 - rho_p),
  rho = r^N, t_m the largest mRNA point mass at >= N_m (Beta-Poisson, exact), t_p <= 0.4 / sqrt(N_p) (the
  protein is a mixed Poisson, whose point masses at n are at most n^n e^-n / n!);
* discretisation of the age ODEs: the grids are shared by every (z, w), so the error is an analytic function
  whose Taylor coefficients are bounded by its maximum on the unit torus, estimated there against a finer grid;
* rounding, amplified by r_m^-(M-1) r_p^-(P-1): 1e-15 rms(|G|) (a relative error of 1e-15 at every grid
  point, not assumed to average out: errors of the per-w quantities are shared along z).
r_m, r_p minimise the sum of the first and last. The cost is proportional to N_m N_p, so only the mRNA rows that
hold more than ZERO_MASS of the exact Beta-Poisson mRNA law are inverted (`mrna_rows`); the rows beyond are 0, an
error of at most that mass (`parts["rows_left_out"]`, since P(m, p) <= P(m)).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.fft

from ..errors import UserError
from ..networks.closed_form import beta_poisson_pmf_rows, match_beta_poisson, net_changes, reactions_changing
from ..networks.reaction import ReactionNetwork
from . import pgf_kernel as kern

ROUNDING = 1e-15   # relative rounding error of G at a grid point, before the inversion's amplification
ZERO_MASS = 1e-13  # mRNA rows whose whole Beta-Poisson mass is below this are left out of the inversion (set to 0)


@dataclass(frozen=True)
class GeneRoles:
    """The observed (mRNA, protein) species of a gene-shaped network and the rate name of each role."""

    mrna: str
    protein: str
    k0: str   # promoter off -> on
    k1: str   # promoter on -> off
    v0: str   # transcription while on
    d0: str   # mRNA loss per molecule
    v1: str   # translation per mRNA
    d1: str   # protein loss per molecule

    def values(self, rates: Mapping[str, float]) -> np.ndarray:
        """(k0, k1, v0, d0, v1, d1) from rate values by name."""
        return np.array([float(rates[n]) for n in (self.k0, self.k1, self.v0, self.d0, self.v1, self.d1)])


@dataclass(frozen=True)
class PGFSettings:
    """Numerical settings: Radau stages, steps per unit of the ODEs' rate (head: z-dependent ages; tail),
    initial step (relative to 1 / (2 v0 + k0 + k1 + d0)) and its growth, FFT sizes per cap and at least."""

    stages: int = 7
    cstep: float = 3.0
    tail_cstep: float = 1.0
    hmin: float = 0.01
    grade: float = 0.2
    size_m: float = 2.0
    size_p: float = 2.0
    min_size: int = 64
    fit_mrna: bool = True  # invert only the mRNA rows that hold more than ZERO_MASS (`mrna_rows`); False: all


@dataclass(frozen=True)
class PGFResult:
    """Window pmf on 0..M-1 x 0..P-1 (float64, clipped at 0), the mass outside it, the estimated largest
    absolute error of one probability (`error`, its parts in `parts`), the FFT sizes and radii, seconds."""

    pmf: np.ndarray
    overflow: float
    error: float
    parts: dict[str, float]
    sizes: tuple[int, int]
    radii: tuple[float, float]
    wall_time: float


# ------------------------------------------------------------------------------------------ structure
def match_gene(network: ReactionNetwork, observed: Sequence[str]) -> GeneRoles | None:
    """The roles of a gene-shaped network observed on (mRNA, protein) in either order, or None: a two-state
    switch drives a species M (Beta-Poisson shape, `closed_form`), M makes P at rate v1 M without changing,
    P is lost at d1 P, and no other reaction touches or reads P."""
    if not isinstance(network, ReactionNetwork) or len(observed) != 2:
        return None
    for m, p in (tuple(observed), tuple(observed)[::-1]):
        roles = match_beta_poisson(network, m)
        if roles is None or not all(r.mass_action for r in network.reactions):
            continue
        rs = reactions_changing(network, p)
        make = [r for r in rs if dict(r.reactants) == {m: 1} and net_changes(network, r) == {p: 1}]
        lose = [r for r in rs if dict(r.reactants) == {p: 1} and net_changes(network, r) == {p: -1}]
        readers = [r for r in network.reactions if p in r.reactants]
        if len(rs) == 2 and len(make) == 1 and len(lose) == 1 and readers == lose:
            return GeneRoles(m, p, roles["k_on"], roles["k_off"], roles["v"], roles["d"],
                             str(make[0].rate), str(lose[0].rate))
    return None


def require_gene(network: ReactionNetwork, observed: Sequence[str]) -> GeneRoles:
    """`match_gene` or a UserError."""
    roles = match_gene(network, observed)
    if roles is None:
        raise UserError(f"pgf engine: network {network.name} observed on {', '.join(observed)} is not a two-state "
                        "switch driving a first-order mRNA that makes a first-order protein; use --engine fsp or ssa")
    return roles


# ------------------------------------------------------------------------------------------ numerics
def age_grids(rates: np.ndarray, s: PGFSettings, refine: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Head (ages where z matters: v0 e^{-d0 a} / d0 > 1e-16) and tail (until the neglected V integral,
    bounded through the mean protein count one mRNA leaves, is below 1e-16) step edges."""
    k0, k1, v0, d0, v1, d1 = (float(x) for x in rates)
    a_star = (math.log(max(v0 / d0, 1.0)) + 36.9) / d0
    lam = min(d0, d1)
    a_end = a_star
    while 2.0 * v0 * v1 * math.exp(-lam * a_end) * (a_end / lam + 1.0 / lam ** 2) > 1e-16:
        a_end += 1.0 / lam
    head = kern.step_grid(0.0, a_star, d0 + d1, 2.0 * v1, d1, s.cstep / refine,
                          s.hmin / refine / (2.0 * v0 + k0 + k1 + d0), s.grade / refine)
    tail = kern.step_grid(a_star, a_end, d1, 2.0 * v1, d1, s.tail_cstep / refine, 1e300, 0.0)
    return head, tail


def pgf_values(rates: np.ndarray, zs: np.ndarray, ws: np.ndarray, s: PGFSettings, refine: float = 1.0) -> np.ndarray:
    """G on the grid zs x ws (complex, |z|, |w| <= 1)."""
    head, tail = age_grids(rates, s, refine)
    rc, ra = kern.radau(s.stages)
    xs, wq = kern.gauss_legendre(16)
    return kern.pgf_grid(np.asarray(zs, dtype=np.complex128), np.asarray(ws, dtype=np.complex128),
                         np.asarray(rates, dtype=np.float64), head, tail, rc, ra, xs, wq)


def _radii(t_m: float, t_p: float, sizes: tuple[int, int], caps: tuple[int, int]) -> tuple[float, float]:
    """(alpha_m, alpha_p), r^N = 10^-alpha, minimising aliasing + rounding bounds (module docstring)."""
    alphas = np.linspace(0.5, 16.0, 63)
    am, ap = np.meshgrid(alphas, alphas, indexing="ij")
    rho_m, rho_p = 10.0 ** -am, 10.0 ** -ap
    amp = 10.0 ** (am * (caps[0] - 1) / sizes[0] + ap * (caps[1] - 1) / sizes[1])
    total = t_m * rho_m / (1 - rho_m) + t_p * rho_p / (1 - rho_p) + ROUNDING * amp
    i, j = np.unravel_index(np.argmin(total), total.shape)
    return float(am[i, j]), float(ap[i, j])


def window_pmf(rates: np.ndarray | Sequence[float], caps: Sequence[int],
               settings: PGFSettings | None = None, beta: Sequence[float] = (1.0, 1.0)) -> PGFResult:
    """Stationary joint pmf of (mRNA, protein) on 0..M-1 x 0..P-1 from rates (k0, k1, v0, d0, v1, d1); with
    `beta` (b_m, b_p) that of the counts binomially thinned (each molecule seen with probability b): the thinned
    law's generating function is G(1 - b_m + b_m z, 1 - b_p + b_p w), still inside the unit polydisc, so the
    inversion and its error bounds hold as they are (the mRNA tail bound with v0 b_m: thinned Beta-Poisson)."""
    t0 = time.perf_counter()
    s = settings or PGFSettings()
    r = np.asarray(rates, dtype=np.float64)
    if r.shape != (6,) or not np.all(np.isfinite(r)) or np.any(r < 0) or min(r[3], r[5], r[0] + r[1]) <= 0:
        raise UserError(f"pgf engine: rates (k0, k1, v0, d0, v1, d1) must be finite and >= 0 with d0, d1, "
                        f"k0 + k1 > 0, got {list(r)}")
    b_m, b_p = (float(b) for b in beta)
    if not (0.0 < b_m <= 1.0 and 0.0 < b_p <= 1.0):
        raise UserError(f"pgf engine: detection probabilities must lie in (0, 1], got {b_m}, {b_p}")
    cm_out, cp = (int(c) for c in caps)
    k0, k1, v0, d0 = r[:4]
    cm, left_out = mrna_rows(r, cm_out, b_m) if s.fit_mrna else (cm_out, 0.0)
    nm = scipy.fft.next_fast_len(max(s.min_size, math.ceil(s.size_m * cm)))
    np_ = scipy.fft.next_fast_len(max(s.min_size, math.ceil(s.size_p * cp)), real=True)
    t_m = kern.beta_poisson_tail_max(k0 / d0, k1 / d0, b_m * v0 / d0, nm) if v0 > 0 else 0.0
    t_p = min(1.0, 0.4 / math.sqrt(np_))
    am, ap = _radii(t_m, t_p, (nm, np_), (cm, cp))
    rm, rp = 10.0 ** (-am / nm), 10.0 ** (-ap / np_)
    zs = rm * np.exp(2j * np.pi * np.arange(nm) / nm)
    ws = rp * np.exp(2j * np.pi * np.arange(np_ // 2 + 1) / np_)
    g = pgf_values(r, 1.0 - b_m + b_m * zs, 1.0 - b_p + b_p * ws, s)
    full = scipy.fft.irfft2(np.conj(g), s=(nm, np_))[:cm, :cp]
    pmf = full * (rm ** -np.arange(cm, dtype=float))[:, None] * (rp ** -np.arange(cp, dtype=float))[None, :]
    parts = {
        "aliasing": t_m * 10 ** -am / (1 - 10 ** -am) + t_p * 10 ** -ap / (1 - 10 ** -ap),
        "rounding": ROUNDING * float(np.sqrt(np.mean(np.abs(g) ** 2)))
        * 10 ** (am * (cm - 1) / nm + ap * (cp - 1) / np_),
        "discretisation": discretisation_error(r, s),
        "rows_left_out": left_out,
    }
    pmf = np.pad(np.maximum(pmf, 0.0), ((0, cm_out - cm), (0, 0)))
    return PGFResult(pmf=pmf, overflow=float(max(1.0 - pmf.sum(), 0.0)), error=float(sum(parts.values())),
                     parts=parts, sizes=(nm, np_), radii=(rm, rp), wall_time=time.perf_counter() - t0)


def mrna_rows(rates: np.ndarray, cap: int, beta: float = 1.0) -> tuple[int, float]:
    """(M, mass): the fewest mRNA rows 0..M-1 (M <= cap) whose complement M..cap-1 holds at most ZERO_MASS of the
    exact (thinned) Beta-Poisson mRNA law, and that mass. Every probability of those rows is at most it (P(m, p) <=
    P(m)), so inverting G on M rows only and setting the rest to 0 errs by at most `mass` there; the inversion's
    cost is proportional to its rows."""
    k0, k1, v0, d0 = (float(x) for x in rates[:4])
    if v0 * beta <= 0.0:
        return 1, 0.0
    law = beta_poisson_pmf_rows({"k_on": k0, "k_off": k1, "v": v0 * beta, "d": d0}, cap)[0, :cap]
    above = np.cumsum(law[::-1])[::-1]  # above[m]: the law's mass on m..cap-1
    m = max(int(np.argmax(above <= ZERO_MASS)), 1) if above[-1] <= ZERO_MASS else cap
    return m, float(above[m]) if m < cap else 0.0


def observed_window(roles: GeneRoles, observed: Sequence[str], rates: Mapping[str, float],
                    caps: Sequence[int], beta: Sequence[float] = (1.0, 1.0)) -> PGFResult:
    """window_pmf at rate values by name, its pmf on the caps of `observed` in that order (protein first
    transposes it); `beta` the detection probabilities in that order too."""
    flip = observed[0] != roles.mrna
    r = window_pmf(roles.values(rates), tuple(caps)[::-1] if flip else caps,
                   beta=tuple(beta)[::-1] if flip else tuple(beta))
    return dataclasses.replace(r, pmf=np.ascontiguousarray(r.pmf.T)) if flip else r


def discretisation_error(rates: np.ndarray, s: PGFSettings, n: int = 16) -> float:
    """max |G - G on grids refined twice| over n x (n/4 + 1) points of the unit torus (half the w circle)."""
    zs = np.exp(2j * np.pi * (np.arange(n) + 0.5) / n)
    ws = np.exp(2j * np.pi * np.arange(n // 4 + 1) / (n // 2))
    return float(np.abs(pgf_values(rates, zs, ws, s) - pgf_values(rates, zs, ws, s, refine=2.0)).max())
