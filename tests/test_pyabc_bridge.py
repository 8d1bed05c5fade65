"""The pyabc bridge (inference/pyabc_bridge/) against pyabc's own: the fast path's densities and weights to 1e-10, a
whole run reproducing pyabc's, the History it writes read back by pyabc, the progress lines of a real run; and the
compat layer: its check passes on this pyabc, names what differs on another, and `infer` then runs pyabc's own
path with a one-line note."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyabc
import pytest
from pyabc.inference_util import create_prior_pdf, create_transition_pdf
from pyabc.transition import ModelPerturbationKernel, MultivariateNormalTransition
from scipy import stats

from surrogate_abc.inference.pyabc_bridge import compat, load_compat
from surrogate_abc.inference.pyabc_bridge.densities import (
    DeferredWeights,
    PriorDensity,
    TransitionDensity,
    gaussian_mixture_density,
)

from conftest import cli_env, write_protocol


def test_compat_check_passes_on_this_pyabc():
    assert compat.check() is None
    assert load_compat() == (compat, None)


@pytest.mark.parametrize("reshape", ["signature", "gone", "acceptor"])
def test_compat_check_names_what_another_pyabc_reshaped(monkeypatch, reshape):
    """Another pyabc release (a private method with other parameters, one removed, an attribute gone): check()
    names it, and load_compat gives no compat module but one line saying pyabc's own path runs."""
    if reshape == "signature":
        monkeypatch.setattr(pyabc.ABCSMC, "_prepare_next_iteration", lambda self, t, sample: None)
        named = "ABCSMC._prepare_next_iteration"
    elif reshape == "gone":
        monkeypatch.delattr(pyabc.History, "_save_to_population_db")
        named = "History._save_to_population_db"
    else:
        original = pyabc.StochasticAcceptor.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            del self.pdf_norms

        monkeypatch.setattr(pyabc.StochasticAcceptor, "__init__", init)
        named = "pdf_norms"
    assert named in compat.check()
    module, note = load_compat()
    assert module is None and named in note and "pyabc's own ABC-SMC" in note and "\n" not in note


# Run before surrogate_abc is imported: pyabc as a release without a private name the fast path uses (pyabc itself
# only binds it as a default argument, so pyabc's own path still works).
_WITHOUT_INTERNALS = """
import pyabc.inference.smc
del pyabc.inference.smc.identity
import sys
from surrogate_abc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_infer_runs_pyabcs_own_path_without_the_internals(tmp_path):
    """With a private pyabc name gone, `infer` does not fail: it says so in one line and runs pyabc's own
    ABCSMC, History and sampler, whose posterior is the exact one (Poisson cells, log-uniform prior: the
    posterior of the rate is Gamma(sum x, n)); it writes the same files."""
    import arviz as az
    import h5py

    cells = np.random.default_rng(5).poisson(7.0, 300)
    with h5py.File(tmp_path / "obs.h5", "w") as f:
        f["mrna"] = cells
    proto = write_protocol(tmp_path)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_WITHOUT_INTERNALS), "infer", str(tmp_path / "obs.h5"),
                        "--emulator", f"exact:{proto}", "--population", "300", "--generations", "8",
                        "--chains", "2", "--check", "none", "--no-plots", "--out", str(tmp_path / "out")],
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "pyabc's own ABC-SMC" in line]
    assert len(notes) == 1 and "identity" in notes[0], r.stderr
    assert "Traceback" not in r.stderr
    assert {"posterior.nc", "summary.csv", "abc.db"} <= {p.name for p in (tmp_path / "out").iterdir()}
    a = az.from_netcdf(str(tmp_path / "out" / "posterior.nc")).posterior["a"].to_numpy().ravel()
    qs = np.array([0.05, 0.5, 0.95])
    exact = stats.gamma(a=cells.sum(), scale=1.0 / len(cells))
    ref, got = exact.ppf(qs), np.quantile(a, qs)
    se = np.sqrt(qs * (1 - qs) / 300) / exact.pdf(ref)  # Monte Carlo error of one population's draws
    assert np.all(np.abs(got - ref) < np.maximum(0.3 * (ref[2] - ref[0]), 3.5 * se)), (got, ref)


def _population(rng, n=60, names=("a", "b", "c")):
    x = pd.DataFrame(rng.normal(size=(n, len(names))) * [1.0, 0.3, 2.0][: len(names)], columns=list(names))
    w = rng.random(n)
    return x, w / w.sum()


def test_transition_and_prior_densities_equal_pyabcs_own():
    rng = np.random.default_rng(0)
    transitions = []
    for _ in range(2):
        tr = MultivariateNormalTransition()
        tr.fit(*_population(rng))
        transitions.append(tr)
    probs = pd.DataFrame({"p": [0.7, 0.3]}, index=pd.Index([0, 1], name="m"))
    kernel = ModelPerturbationKernel(2, probability_to_stay=0.8)
    ref = create_transition_pdf(transitions=transitions, model_probabilities=probs, model_perturbation_kernel=kernel)
    fast = TransitionDensity.from_frame(transitions, probs, kernel)
    priors = [pyabc.Distribution(a=pyabc.RV("norm", 0, 1), b=pyabc.RV("uniform", -1, 2), c=pyabc.RV("norm", 1, 3))] * 2
    model_prior = pyabc.RV("randint", 0, 2)
    ref_prior = create_prior_pdf(model_prior=model_prior, parameter_priors=priors)
    fast_prior = PriorDensity(model_prior, priors)
    pairs = [(int(m), pyabc.Parameter(dict(zip("abc", row)))) for m, row in
             zip(rng.integers(0, 2, 200), rng.normal(size=(200, 3)) * 1.5)]
    fast.prefill(pairs)
    fast_prior.prefill(pairs)
    for m, par in pairs:
        assert fast(m, par) == pytest.approx(ref(m, par), rel=1e-10, abs=1e-300)
        assert fast_prior(m, par) == pytest.approx(ref_prior(m, par), rel=1e-12, abs=0)
    m, par = 1, pyabc.Parameter({"a": 0.1, "b": 0.2, "c": -0.3})  # not prefilled: computed on the spot
    assert fast(m, par) == pytest.approx(ref(m, par), rel=1e-10)


def test_gaussian_mixture_density_matches_scipy_for_a_singular_covariance():
    from scipy import stats

    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 3))
    cov = a.T @ a  # rank 2 in 3 dimensions
    centres = rng.normal(size=(40, 2)) @ a
    w = rng.dirichlet(np.ones(40))
    x = centres[:7] + 0.01 * (rng.normal(size=(7, 2)) @ a)
    ref = np.array([(stats.multivariate_normal(cov=cov, allow_singular=True).pdf(xi - centres) * w).sum() for xi in x])
    assert np.allclose(gaussian_mixture_density(x, centres, w, cov), ref, rtol=1e-9)


def test_deferred_weights_are_pyabcs_weight_function():
    from pyabc.inference_util.inference_util import _weight_function  # the reference: pyabc's own formula

    rng = np.random.default_rng(2)
    tr = MultivariateNormalTransition()
    tr.fit(*_population(rng))
    probs = pd.DataFrame({"p": [1.0]}, index=pd.Index([0], name="m"))
    kernel = ModelPerturbationKernel(1)
    priors = [pyabc.Distribution(a=pyabc.RV("norm", 0, 1), b=pyabc.RV("norm", 0, 2), c=pyabc.RV("norm", 0, 3))]
    model_prior = pyabc.RV("randint", 0, 1)
    deferred = DeferredWeights(PriorDensity(model_prior, priors), TransitionDensity.from_frame([tr], probs, kernel))

    class P:  # the one attribute of a pyabc Particle that resolve() sets
        weight = None

    items = [(pyabc.Parameter(dict(zip("abc", rng.normal(size=3)))), float(rng.random())) for _ in range(30)]
    parts = []
    for par, aw in items:
        assert np.isnan(deferred(0, par, aw))
        parts.append(P())
        deferred.bind(parts[-1])
    deferred.resolve()
    ref_prior = create_prior_pdf(model_prior=model_prior, parameter_priors=priors)
    ref_tr = create_transition_pdf(transitions=[tr], model_probabilities=probs, model_perturbation_kernel=kernel)
    for (par, aw), p in zip(items, parts):
        assert p.weight == pytest.approx(_weight_function(0, par, aw, ref_prior, ref_tr), rel=1e-10)


@pytest.mark.parametrize("mode", ["likelihood", "simulator"])
def test_fast_run_reproduces_pyabcs_run_and_its_history(tmp_path, mode):
    """Same seed, same proposals: the fast path's populations, weights and stored History equal the stock path's."""
    from surrogate_abc.emulators.exact import exact_emulator
    from surrogate_abc.inference.run import InferenceSettings, run_chains

    em = exact_emulator(str(write_protocol(tmp_path)))
    rng = np.random.default_rng(4)
    counts = np.bincount(rng.poisson(6.0, 300), minlength=120)
    hist = np.concatenate([counts[:50], np.add.reduceat(counts[50:120], np.arange(0, 70, 5))])  # the protocol's bins
    overflow = int(counts[120:].sum())
    out = {}
    for fast in (False, True):
        s = InferenceSettings(mode=mode, population=80, generations=4, chains=1, seed=3, fast=fast)
        db = tmp_path / f"{fast}.db"
        (chain,) = run_chains([em], hist, overflow, s, db, log=lambda _m: None)
        h = pyabc.History(f"sqlite:///{db}", _id=chain.run_id)
        out[fast] = (chain, h)
    (slow, hs), (fast, hf) = out[False], out[True]
    assert np.allclose(slow.params, fast.params, rtol=1e-12)
    assert np.allclose(slow.weights, fast.weights, rtol=1e-10)
    assert np.allclose(slow.epsilon, fast.epsilon, rtol=1e-10)
    for t in range(hs.max_t + 1):
        a, b = hs.get_weighted_distances(t), hf.get_weighted_distances(t)
        assert np.allclose(a["w"], b["w"], rtol=1e-10) and np.allclose(a["distance"], b["distance"], rtol=1e-10)
        (da, wa), (db_, wb) = hs.get_distribution(m=0, t=t), hf.get_distribution(m=0, t=t)
        assert list(da.columns) == list(db_.columns)
        assert np.allclose(da.to_numpy(), db_.to_numpy()) and np.allclose(wa, wb, rtol=1e-10)
    pa, pb = hs.get_all_populations(), hf.get_all_populations()
    assert list(pa["samples"]) == list(pb["samples"]) and np.allclose(pa["epsilon"], pb["epsilon"])
    assert hf.n_populations == hs.n_populations and hf.total_nr_simulations == hs.total_nr_simulations


@pytest.mark.parametrize("importance", [True, False])
def test_batched_stochastic_acceptance_is_the_acceptors_own_with_the_same_uniforms(importance):
    """stochastic_acceptance decides like pyabc.StochasticAcceptor called once per particle, up to the needed-th
    acceptance, and leaves numpy's global generator where those calls would have left it."""
    from surrogate_abc.inference.pyabc_bridge.densities import stochastic_acceptance

    acceptor = pyabc.StochasticAcceptor(apply_importance_weighting=importance)
    acceptor.pdf_norms = {3: -10.0}
    eps = pyabc.Temperature()
    eps.temperatures = {3: 2.5}
    dens = np.random.default_rng(0).normal(-14.0, 3.0, size=400)
    dens[7] = -np.inf  # acceptance probability 0
    dens[9] = -4.0  # above pdf_norm: weight > 1 with importance weighting
    for needed in (5, 10_000):
        np.random.seed(11)
        ref, n_acc = [], 0
        for d in dens:
            r = acceptor(_Fixed(d), eps, {}, {}, 3, None)
            ref.append((bool(r.accept), float(r.weight)))
            n_acc += bool(r.accept)
            if n_acc >= needed:
                break
        after_ref = np.random.uniform()
        np.random.seed(11)
        rows, accepted, weight = stochastic_acceptance(compat.pdf_norm(acceptor, 3), eps(3), importance, dens, needed)
        after = np.random.uniform()
        assert rows == len(ref)
        assert [bool(a) for a in accepted[:rows]] == [a for a, _ in ref]
        assert np.allclose(weight[:rows], [w for _, w in ref], rtol=1e-13, atol=0)
        assert after == after_ref


class _Fixed:
    """A log-scale kernel returning a fixed value (for driving StochasticAcceptor directly)."""

    ret_scale = pyabc.distance.SCALE_LOG

    def __init__(self, value):
        self.value = value

    def __call__(self, x, x_0, t, par):
        return self.value


def test_parameters_without_flattening_equal_pyabcs_and_logliks_of_rows_equal_the_scalar_one():
    from surrogate_abc.inference.pyabc_bridge.batched_samplers import parameters
    from surrogate_abc.inference.pyabc_bridge.parts import multinomial_loglik, multinomial_logliks

    vals = np.random.default_rng(1).normal(size=(6, 3))
    made = parameters(["a", "b", "c"], vals)
    for p, row in zip(made, vals):
        ref = pyabc.Parameter({"a": row[0], "b": row[1], "c": row[2]})
        assert type(p) is pyabc.Parameter and p == ref and p.b == ref.b and list(p) == list(ref)
    counts = np.array([0.0, 3.0, 1.0, 0.0, 7.0])
    probs = np.random.default_rng(2).dirichlet(np.ones(5), size=4)
    probs[0, 2] = 0.0  # floored, not -inf
    assert np.allclose(multinomial_logliks(counts, probs), [multinomial_loglik(counts, p) for p in probs], rtol=1e-14)


def test_bulk_history_answers_its_last_population_as_the_database_does(tmp_path):
    """BulkHistory's in-memory answer for the population it wrote last equals pyabc's database query exactly
    (frame, index, column order, values and weights), for two models and a nested parameter."""
    from pyabc.population import Particle, Population


    rng = np.random.default_rng(7)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    h = compat.BulkHistory(db, stores_sum_stats=False)  # as infer runs it
    h.store_initial_data(None, {}, {}, {}, ["m0", "m1"], "{}", "{}", "{}")
    for t in range(2):
        w = rng.random(25)
        particles = [Particle(m=int(i % 2), parameter=pyabc.Parameter({"z": float(rng.normal()), "a": float(rng.normal()),
                                                                       "n": {"x": float(rng.random())}}),
                              weight=float(w[i] / w.sum()), sum_stat={}, distance=float(rng.random()), accepted=True)
                     for i in range(25)]
        h.append_population(t, 1.0 / (t + 1), Population(particles), 100, ["m0", "m1"])
        for m in (0, 1):
            got = h.get_distribution(m, t)
            ref = pyabc.History.get_distribution(h, m, t)  # the database's answer
            assert h._latest is not None and h._latest[0] == t  # answered from memory
            pd.testing.assert_frame_equal(got[0], ref[0], check_exact=True)
            assert np.array_equal(got[1], ref[1])
    old = h.get_distribution(0, 0)  # not the last one: from the database
    reader = pyabc.History(db, _id=h.id)
    pd.testing.assert_frame_equal(old[0], reader.get_distribution(0, 0)[0], check_exact=True)


def test_gc_paused_restores_the_collector_as_it_was():
    import gc

    from surrogate_abc.inference.pyabc_bridge.densities import gc_paused

    was = gc.isenabled()
    try:
        for start in (True, False):
            (gc.enable if start else gc.disable)()
            with pytest.raises(KeyError):
                with gc_paused():
                    assert not gc.isenabled()
                    raise KeyError("inside")
            assert gc.isenabled() is start
    finally:
        (gc.enable if was else gc.disable)()


def test_generation_progress_turns_pyabcs_two_lines_into_one_progress_line():
    import logging

    from surrogate_abc.inference.pyabc_bridge.progress import GenerationProgress

    lines: list[str] = []
    handler = GenerationProgress(1, 2, "likelihood", lines.append, compat=compat)

    def record(msg: str, func: str = "run_generation") -> logging.LogRecord:
        r = logging.LogRecord("ABC", logging.INFO, "smc.py", 1, msg, None, None, func=func)
        return r

    handler.emit(record("t: 3, eps: 4.50000000e+00."))
    handler.emit(record("Accepted: 500 / 1234 = 4.0519e-01, ESS: 3.2110e+02.", func="other"))  # not run_generation
    assert lines == []
    handler.emit(record("Accepted: 500 / 1234 = 4.0519e-01, ESS: 3.2110e+02."))
    assert len(lines) == 1
    assert lines[0].startswith("chain 2/2  generation 3  temperature 4.5  acceptance 0.405  ESS 321.1  elapsed ")


def test_cluster_workers_judge_a_request_of_proposals_with_one_emulator_call(tmp_path, monkeypatch):
    """BatchedSimulateOne, called once per particle as pyabc's dask/redis workers do, makes one emulator call per
    `batch` particles, and the run's posterior agrees with the single-process sampler's (Monte Carlo error)."""
    from pyabc.sampler import SingleCoreSampler

    from surrogate_abc.emulators.exact import exact_emulator
    from surrogate_abc.inference.pyabc_bridge import batched_samplers as samplers
    from surrogate_abc.inference.pyabc_bridge import parts as abc_parts
    from surrogate_abc.inference.run import InferenceSettings, run_chains

    class OneAtATime(SingleCoreSampler):
        """What a worker does: call the shipped simulate function once per particle, in requests of 16."""

        def sample_until_n_accepted(self, n, simulate_one, t, **kwargs):
            one = samplers.BatchedSimulateOne(simulate_one, 16)
            sample, n_eval = compat.empty_sample(self), 0
            while sample.n_accepted < n:
                sample.append(one())
                n_eval += 1
            self.nr_evaluations_ = n_eval
            return sample

    calls, rows = [0], [0]
    inner = abc_parts.EmulatorModel.evaluate

    def counting(self, theta):
        calls[0] += 1
        rows[0] += len(theta)
        return inner(self, theta)

    em = exact_emulator(str(write_protocol(tmp_path)))
    counts = np.bincount(np.random.default_rng(8).poisson(7.0, 300), minlength=120)
    hist = np.concatenate([counts[:50], np.add.reduceat(counts[50:120], np.arange(0, 70, 5))])
    out = {}
    for name, factory in (("batched", samplers.BatchedSampler), ("workers", OneAtATime)):
        monkeypatch.setattr(abc_parts.EmulatorModel, "evaluate", counting)
        calls[0] = rows[0] = 0
        s = InferenceSettings(population=200, generations=5, chains=1, seed=3)
        (chain,) = run_chains([em], hist, int(counts[120:].sum()), s, tmp_path / f"{name}.db", log=lambda _m: None,
                              sampler_factory=factory)
        monkeypatch.undo()
        idx = np.random.default_rng(0).choice(len(chain.weights), size=5000, p=chain.weights)
        out[name] = (np.quantile(chain.params[idx, 0], [0.05, 0.5, 0.95]), calls[0], rows[0], chain)
    (ref, *_), (got, n_calls, n_rows, chain) = out["batched"], out["workers"]
    assert n_rows % 16 == 0 and n_calls == n_rows // 16  # one emulator call per request of 16
    assert n_rows >= chain.n_simulations.sum()
    assert chain.epsilon[-1] == pytest.approx(1.0)
    cells = np.random.default_rng(8).poisson(7.0, 300)  # exact posterior: Gamma(sum x, rate n) (log-uniform prior)
    exact = stats.gamma(a=cells.sum(), scale=1.0 / len(cells)).ppf([0.05, 0.5, 0.95])
    width = exact[2] - exact[0]  # Monte Carlo error of population 200 (tests/test_cluster_samplers.py's _agree)
    assert np.all(np.abs(got - exact) < 0.3 * width) and np.all(np.abs(ref - exact) < 0.3 * width), (exact, ref, got)


def _poisson_run(tmp_path, log, **settings):
    """One chain of the fast path on 300 Poisson cells against the exact Poisson model."""
    from surrogate_abc.emulators.exact import exact_emulator
    from surrogate_abc.inference.run import InferenceSettings, run_chains

    em = exact_emulator(str(write_protocol(tmp_path)))
    counts = np.bincount(np.random.default_rng(9).poisson(6.0, 300), minlength=120)
    hist = np.concatenate([counts[:50], np.add.reduceat(counts[50:120], np.arange(0, 70, 5))])
    s = InferenceSettings(population=100, generations=4, chains=1, seed=2, **settings)
    (chain,) = run_chains([em], hist, int(counts[120:].sum()), s, tmp_path / "abc.db", log=log)
    return chain


def test_pyabc_asks_for_every_density_where_the_fast_path_prefilled_it(tmp_path, monkeypatch):
    """In a real run, every prior and transition density pyabc asks for (one particle at a time: the Temperature
    records of the whole sample, the accepted particles' weights) was computed in a batch beforehand: no density
    is computed per particle."""
    from surrogate_abc.inference.pyabc_bridge import densities

    asked, missed = [0], [0]
    inner = densities._CachedDensity.__call__

    def counting(self, m_ss, theta_ss):
        asked[0] += 1
        hit = self._cache.get(id(theta_ss))
        missed[0] += hit is None or hit[0] is not theta_ss
        return inner(self, m_ss, theta_ss)

    monkeypatch.setattr(densities._CachedDensity, "__call__", counting)
    chain = _poisson_run(tmp_path, log=lambda _m: None)
    assert chain.epsilon[-1] == pytest.approx(1.0)
    assert asked[0] > 1000 and missed[0] == 0, (asked, missed)


def test_progress_lines_of_a_real_run_one_per_generation(tmp_path):
    """pyabc's own log lines, read by compat.generation_record, give one progress line per generation."""
    lines: list[str] = []
    chain = _poisson_run(tmp_path, log=lines.append)
    assert len(lines) == len(chain.epsilon) >= 2, lines
    for g, (line, eps, ess) in enumerate(zip(lines, chain.epsilon, chain.ess)):
        assert line.startswith(f"chain 1/1  generation {g}  temperature {eps:.4g}  acceptance "), line
        assert f"ESS {ess:.1f}" in line


def test_only_the_abc_smc_path_imports_pyabc():
    """The batch method, the settings, the calibration statistics and the command line's parser load no pyabc (the
    bridge is the one place that does); the ABC-SMC path does."""
    code = ("import sys\n"
            "import surrogate_abc.inference.transcriptome.run, surrogate_abc.inference.settings\n"
            "import surrogate_abc.inference.calibration.stats\n"
            "from surrogate_abc.cli import build_parser; build_parser()\n"
            "print('pyabc' in sys.modules)\n"
            "import surrogate_abc.inference.run\n"
            "print('pyabc' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=cli_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"], r.stdout
