"""Exact Beta-Poisson (telegraph) maximum-likelihood fits of many count histograms at once, and the
likelihood-ratio tests of differential burst frequency and burst size between two groups of cells (the test
txburst makes), written from the formulas.

The stationary mRNA law of the telegraph model (promoter on rate k0, off rate k1, transcription v0, decay 1) is
Beta-Poisson: n ~ Poisson(v0 x), x ~ Beta(k0, k1); burst frequency k0, burst size v0 / k1. A fit maximises
sum_n h(n) log p(n | k0, k1, v0) over a gene's count histogram h with scipy's L-BFGS-B in log parameters inside
the telegraph_mrna prior box (k0 in [0.01, 10], k1 in [0.1, 100], v0 in [1, 1000]); the pmf is
`surrogate_abc.networks.closed_form.beta_poisson_pmf_rows` (probabilities below 1e-300 floored), the gradient
central differences. Starts: the method of moments and `n_random` log-uniform draws in the box; the best wins.
All the fits of one call run in lock-step: each in its own thread, their likelihood evaluations gathered into
one vectorised pmf evaluation per round, so hundreds of genes cost about as much Python as one.

Tests per gene (A and B two histograms): the alternative fits A and B apart (6 parameters); the frequency null
shares k0 (5), the size null shares v0 / k1 (5: v0_g = size * k1_g, size in [0.01, 1e4], so v0 may leave the
box there). Both nulls start from the alternative's fits (the shared value at A's and at B's). 2 (ll_alt -
ll_null) ~ chi2(1); the sign of a change is that of the ML log2 fold change (B over A).

    from beta_poisson import histograms, fit, lrt, benjamini_hochberg
    hist = histograms(counts_of_each_gene)      # (genes, max count + 1)
    f = fit(hist)                               # f.theta: (genes, 3) k0, k1, v0; f.ll; f.at_bound
    t = lrt(hist_a, hist_b)                     # t.p["burst_frequency"], t.log2fc["burst_size"], ...
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import optimize, stats

from surrogate_abc.networks.closed_form import beta_poisson_pmf_rows

BOX = np.array([[0.01, 10.0], [0.1, 100.0], [1.0, 1000.0]])  # k0, k1, v0: the telegraph_mrna prior box
LOG_BOX = np.log(BOX)
SIZE_BOX = np.array([BOX[2, 0] / BOX[1, 1], BOX[2, 1] / BOX[1, 0]])  # v0 / k1 over the box
FLOOR = 1e-300  # probability of a count beyond the pmf's reach (or underflowed)
STEP = 1e-4  # central-difference step in log parameters
AT_BOUND = 1e-3  # an optimum this close (log) to a bound sits at it
CHUNK = 256  # rows per pmf evaluation (keeps its (rows, N) matrix in cache)
WIDTH = 128  # fits running at once (more threads contend for the GIL more than they save in batching)
VARIABLES = ("burst_frequency", "burst_size")
OPTIONS = {"maxiter": 500, "ftol": 1e-10, "gtol": 1e-7}


def histograms(columns: Iterable[np.ndarray]) -> np.ndarray:
    """(genes, max count + 1) float histograms of each gene's integer counts (zero-padded)."""
    hs = [np.bincount(np.asarray(c, dtype=np.int64)) for c in columns]
    out = np.zeros((len(hs), max((len(h) for h in hs), default=1)))
    for i, h in enumerate(hs):
        out[i, : len(h)] = h
    return out


def log_likelihood(theta: np.ndarray, hist: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(R,) log-likelihoods of the parameter sets theta (R, 3: k0, k1, v0) for the histograms hist[rows]
    (rows None: hist has R rows), rows sorted by v0 and evaluated CHUNK at a time."""
    rows = np.arange(len(theta)) if rows is None else np.asarray(rows)
    width = _widths(hist)
    out = np.empty(len(theta))
    order = np.argsort(theta[:, 2])
    for s in range(0, len(order), CHUNK):
        idx = order[s: s + CHUNK]
        cap = int(width[rows[idx]].max())
        p = beta_poisson_pmf_rows({"k_on": theta[idx, 0], "k_off": theta[idx, 1], "v": theta[idx, 2], "d": 1.0},
                                  cap)
        out[idx] = np.einsum("ij,ij->i", hist[rows[idx], :cap], np.log(np.maximum(p[:, :cap], FLOOR)))
    return out


def _widths(hist: np.ndarray) -> np.ndarray:
    nz = hist > 0
    return np.where(nz.any(1), hist.shape[1] - np.argmax(nz[:, ::-1], axis=1), 1)


def moment_start(hist: np.ndarray) -> np.ndarray:
    """(genes, 3) log k0, k1, v0 from the first three factorial moments, clipped into the box; where they have no
    valid solution (under-dispersed or too few counts): k0 = k1 = 1, v0 = twice the mean.

    With r_j = E[n]_j / E[n]_(j-1) (factorial moments), r1 = v a / c, r2 = v (a + 1) / (c + 1),
    r3 = v (a + 2) / (c + 2), c = a + b, solved for a, c, v."""
    n = np.arange(hist.shape[1], dtype=float)
    tot = hist.sum(1)
    f1, f2, f3 = (hist @ n / tot, hist @ (n * (n - 1)) / tot, hist @ (n * (n - 1) * (n - 2)) / tot)
    with np.errstate(divide="ignore", invalid="ignore"):
        r1, r2, r3 = f1, f2 / f1, f3 / f2
        den = r1 - 2 * r2 + r3
        v = (2 * r1 * r3 - r1 * r2 - r2 * r3) / den
        a = 2 * r1 * (r3 - r2) / (r1 * r2 - 2 * r1 * r3 + r2 * r3)
        b = 2 * (r2 - r3) / den - a
        th = np.stack([a, b, v], axis=1)
    bad = ~np.all(np.isfinite(th) & (th > 0), axis=1)
    th[bad] = np.stack([np.ones(bad.sum()), np.ones(bad.sum()), 2 * np.maximum(f1[bad], 0.5)], axis=1)
    return np.clip(np.log(th), LOG_BOX[:, 0], LOG_BOX[:, 1])


# --- lock-step L-BFGS-B --------------------------------------------------------------------------------------

@dataclass
class Problem:
    """One maximisation: log-parameters z (d,) inside bounds (d, 2) -> parameter sets of the histograms rows
    (to_theta: (P, d) -> (P, len(rows), 3)); starts (S, d)."""

    rows: np.ndarray
    to_theta: Callable[[np.ndarray], np.ndarray]
    bounds: np.ndarray
    starts: np.ndarray


@dataclass
class Optimum:
    z: np.ndarray  # (problems, d) best log-parameters
    ll: np.ndarray  # (problems,) log-likelihood there (summed over the problem's histograms)
    evaluations: int  # likelihood rows evaluated in all


def maximise(problems: Sequence[Problem], hist: np.ndarray) -> Optimum:
    """Maximise every problem's log-likelihood from each of its starts (L-BFGS-B, central-difference gradients),
    all in lock-step; the best start of each problem wins."""
    tasks, owner = [], []
    for k, pr in enumerate(problems):
        for z0 in pr.starts:
            tasks.append(_task(pr, np.asarray(z0, float), float(hist[pr.rows].sum())))
            owner.append(k)
    count = [0]

    def evaluate(batch: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        theta = np.concatenate([t for t, _ in batch])
        rows = np.concatenate([r for _, r in batch])
        count[0] += len(theta)
        ll = log_likelihood(theta, hist, rows)
        return np.split(ll, np.cumsum([len(t) for t, _ in batch])[:-1])

    with _one_blas_thread():
        results = _lockstep(tasks, evaluate)
    d = max(len(pr.bounds) for pr in problems) if problems else 0
    z = np.full((len(problems), d), np.nan)
    ll = np.full(len(problems), -np.inf)
    for k, (zk, llk) in zip(owner, results):
        if llk > ll[k]:
            z[k, : len(zk)], ll[k] = zk, llk
    return Optimum(z, ll, count[0])


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """L-BFGS-B's small linear algebra is ~10x slower with a threaded BLAS (thread start-up per call)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - then set OPENBLAS_NUM_THREADS=1 by hand
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _task(pr: Problem, z0: np.ndarray, scale: float) -> Callable[[Callable[[Any], np.ndarray]], tuple]:
    d = len(z0)
    pts = np.vstack([np.zeros(d), STEP * np.eye(d), -STEP * np.eye(d)])
    r = len(pr.rows)
    rows = np.tile(pr.rows, len(pts))

    def run(ask: Callable[[Any], np.ndarray]) -> tuple[np.ndarray, float]:
        def f(z: np.ndarray) -> tuple[float, np.ndarray]:
            theta = pr.to_theta(z + pts).reshape(-1, 3)
            ll = ask((theta, rows)).reshape(len(pts), r).sum(1)
            grad = (ll[1: d + 1] - ll[d + 1:]) / (2 * STEP)
            return -ll[0] / scale, -grad / scale

        z0c = np.clip(z0, pr.bounds[:, 0], pr.bounds[:, 1])
        res = optimize.minimize(f, z0c, jac=True, method="L-BFGS-B", bounds=pr.bounds, options=OPTIONS)
        return res.x, -float(res.fun) * scale

    return run


def _lockstep(tasks: Sequence[Callable[[Callable[[Any], Any]], Any]],
              evaluate: Callable[[list[Any]], list[Any]], width: int = WIDTH) -> list[Any]:
    """Run each task(ask) in its own thread, at most width at a time; whenever every running task waits in
    ask(payload), answer all their payloads with one evaluate(payloads) call. Returns the tasks' results."""
    lock, ready = threading.Lock(), threading.Event()
    events = [threading.Event() for _ in tasks]
    pending: dict[int, Any] = {}
    answers: dict[int, Any] = {}
    out: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []
    state = {"running": 0, "done": 0, "next": 0}
    threads: list[threading.Thread] = []

    def ask(i: int, payload: Any) -> Any:
        events[i].clear()
        with lock:
            pending[i] = payload
            if len(pending) >= state["running"]:
                ready.set()
        events[i].wait()
        return answers.pop(i)

    def work(i: int) -> None:
        try:
            out[i] = tasks[i](lambda payload: ask(i, payload))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors.append(e)
        finally:
            with lock:
                state["running"] -= 1
                state["done"] += 1
                ready.set()

    old = threading.stack_size(4 << 20)
    try:
        while True:
            with lock:
                while state["running"] < width and state["next"] < len(tasks):
                    threads.append(threading.Thread(target=work, args=(state["next"],), daemon=True))
                    threads[-1].start()
                    state["next"] += 1
                    state["running"] += 1
                if state["done"] == len(tasks):
                    break
            ready.wait()
            with lock:
                ready.clear()
                if len(pending) < state["running"] or not pending:
                    continue  # a task finished (top up) or not all have asked yet
                batch = dict(pending)
                pending.clear()
            try:
                values = evaluate(list(batch.values()))
            except BaseException as e:  # noqa: BLE001 - let every waiting thread finish, then raise
                errors.append(e)
                values = [None] * len(batch)
            for i, v in zip(batch, values):
                answers[i] = v
                events[i].set()
    finally:
        threading.stack_size(old)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


# --- fits and tests ----------------------------------------------------------------------------------------

@dataclass
class Fit:
    theta: np.ndarray  # (genes, 3) ML k0, k1, v0
    ll: np.ndarray  # (genes,) maximised log-likelihood
    at_bound: np.ndarray  # (genes,) bool: some parameter at a bound of the box
    seconds: float  # wall clock of the call that made it


def _single(z: np.ndarray) -> np.ndarray:
    return np.exp(z)[:, None, :]


def fit(hist: np.ndarray, n_random: int = 2, seed: int = 0) -> Fit:
    """ML fit of the Beta-Poisson law to each histogram (rows of hist): starts the method of moments and n_random
    log-uniform draws in the box."""
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    mom = moment_start(hist)
    problems = []
    for g in range(len(hist)):
        rand = LOG_BOX[:, 0] + rng.random((n_random, 3)) * (LOG_BOX[:, 1] - LOG_BOX[:, 0])
        problems.append(Problem(np.array([g]), _single, LOG_BOX, np.vstack([mom[g], rand])))
    opt = maximise(problems, hist)
    at = np.any((opt.z - LOG_BOX[:, 0] < AT_BOUND) | (LOG_BOX[:, 1] - opt.z < AT_BOUND), axis=1)
    return Fit(np.exp(opt.z), opt.ll, at, time.perf_counter() - t)


def _frequency_null(z: np.ndarray) -> np.ndarray:
    # z: log k0 (shared), log k1_A, log v0_A, log k1_B, log v0_B
    a = np.stack([z[:, 0], z[:, 1], z[:, 2]], axis=1)
    b = np.stack([z[:, 0], z[:, 3], z[:, 4]], axis=1)
    return np.exp(np.stack([a, b], axis=1))


def _size_null(z: np.ndarray) -> np.ndarray:
    # z: log size (shared), log k0_A, log k1_A, log k0_B, log k1_B; v0_g = size * k1_g
    a = np.stack([z[:, 1], z[:, 2], z[:, 0] + z[:, 2]], axis=1)
    b = np.stack([z[:, 3], z[:, 4], z[:, 0] + z[:, 4]], axis=1)
    return np.exp(np.stack([a, b], axis=1))


@dataclass
class LRT:
    fit_a: Fit
    fit_b: Fit
    ll_null: dict[str, np.ndarray]  # variable -> (genes,) null log-likelihood
    stat: dict[str, np.ndarray]  # 2 (ll_alt - ll_null), clipped at 0
    p: dict[str, np.ndarray]  # chi2(1) p-values
    log2fc: dict[str, np.ndarray]  # ML log2 fold change, B over A
    null_above_alt: dict[str, np.ndarray]  # bool: the null fit beat the alternative by > 1e-3 (alternative not global)
    seconds: float


def lrt(hist_a: np.ndarray, hist_b: np.ndarray, n_random: int = 2, seed: int = 0) -> LRT:
    """Likelihood-ratio tests of burst frequency and burst size, B against A, per gene (row of hist_a, hist_b)."""
    t = time.perf_counter()
    g = len(hist_a)
    width = max(hist_a.shape[1], hist_b.shape[1])
    hist = np.zeros((2 * g, width))
    hist[:g, : hist_a.shape[1]] = hist_a
    hist[g:, : hist_b.shape[1]] = hist_b
    both = fit(hist, n_random, seed)
    fa = Fit(both.theta[:g], both.ll[:g], both.at_bound[:g], both.seconds)
    fb = Fit(both.theta[g:], both.ll[g:], both.at_bound[g:], both.seconds)
    la, lb = np.log(fa.theta), np.log(fb.theta)
    ll_alt = fa.ll + fb.ll
    size_a, size_b = la[:, 2] - la[:, 1], lb[:, 2] - lb[:, 1]
    fb_bounds = LOG_BOX[[0, 1, 2, 1, 2]]
    sb_bounds = np.vstack([np.log(SIZE_BOX), LOG_BOX[[0, 1, 0, 1]]])
    freq, size = [], []
    for i in range(g):
        rows = np.array([i, g + i])
        rest = np.array([la[i, 1], la[i, 2], lb[i, 1], lb[i, 2]])
        freq.append(Problem(rows, _frequency_null, fb_bounds,
                            np.array([[la[i, 0], *rest], [lb[i, 0], *rest]])))
        rest = np.array([la[i, 0], la[i, 1], lb[i, 0], lb[i, 1]])
        size.append(Problem(rows, _size_null, sb_bounds, np.array([[size_a[i], *rest], [size_b[i], *rest]])))
    out = LRT(fa, fb, {}, {}, {}, {}, {}, 0.0)
    lfc = {"burst_frequency": (lb[:, 0] - la[:, 0]) / np.log(2), "burst_size": (size_b - size_a) / np.log(2)}
    for v, probs in zip(VARIABLES, (freq, size)):
        opt = maximise(probs, hist)
        diff = ll_alt - opt.ll
        out.ll_null[v] = opt.ll
        out.stat[v] = 2 * np.maximum(diff, 0.0)
        out.p[v] = stats.chi2.sf(out.stat[v], 1)
        out.log2fc[v] = lfc[v]
        out.null_above_alt[v] = diff < -1e-3
    out.seconds = time.perf_counter() - t
    return out


def benjamini_hochberg(p: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Boolean mask of the hypotheses Benjamini-Hochberg rejects at FDR alpha (NaN p-values never)."""
    p = np.asarray(p, float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.zeros(len(p), bool)
    if len(ok) == 0:
        return out
    order = ok[np.argsort(p[ok])]
    passed = p[order] <= alpha * np.arange(1, len(ok) + 1) / len(ok)
    if passed.any():
        out[order[: np.flatnonzero(passed)[-1] + 1]] = True
    return out
