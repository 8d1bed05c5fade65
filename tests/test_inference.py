"""ABC-SMC inference against the ExactEmulator: the likelihood plumbing (analytic posterior), simulator mode,
the outputs (posterior.nc, summary.csv, PNGs, `report`) and CLI errors for bad observed files."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from scipy import integrate, special, stats

from surrogate_abc.cli import main
from surrogate_abc.config import load_protocol, parse_protocol
from surrogate_abc.emulators.exact import ExactEmulator
from surrogate_abc.errors import UserError
from surrogate_abc.inference.priors import check_prior_in_domain, prior_box
from surrogate_abc.inference.pyabc_bridge.batched_samplers import BatchedSampler
from surrogate_abc.inference.pyabc_bridge.parts import multinomial_loglik
from surrogate_abc.inference.run import InferenceSettings, run_chains

BD = """
name = "bd_infer"
network = "birth_death"
samples = 100
[parameters.a]
prior = "uniform"
low = 1.0
high = 50.0
[fixed]
b = 1.0
[histogram.x]
edges = { start = 0, stop = 80, width = 1 }
"""
TRUE_A, N_CELLS = 10.0, 200


@pytest.fixture(scope="module")
def cells():
    return np.random.default_rng(11).poisson(TRUE_A, N_CELLS)


@pytest.fixture(scope="module")
def files(tmp_path_factory, cells):
    d = tmp_path_factory.mktemp("infer")
    (d / "bd.toml").write_text(BD)
    with h5py.File(d / "obs.h5", "w") as f:
        f["x"] = cells
        f.attrs["true_a"] = TRUE_A
    return d


def truncated_gamma_moments(S: int, n: int, lo: float, hi: float) -> tuple[float, float]:
    """Mean and sd of the posterior of a Poisson rate a under a ~ U(lo, hi): Gamma(S + 1, rate n) on [lo, hi]."""
    logf = lambda a: S * np.log(a) - n * a
    mode = S / n
    f = lambda a, k: a**k * np.exp(logf(a) - logf(mode))
    z, m1, m2 = (integrate.quad(f, lo, hi, args=(k,), points=[mode], limit=200)[0] for k in (0, 1, 2))
    mean = m1 / z
    return mean, np.sqrt(m2 / z - mean**2)


def test_multinomial_loglik_matches_scipy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6))
    counts = rng.multinomial(40, p)
    const = special.gammaln(41) - special.gammaln(counts + 1).sum()
    np.testing.assert_allclose(multinomial_loglik(counts, p) + const, stats.multinomial.logpmf(counts, 40, p), rtol=1e-12)


def test_likelihood_mode_matches_analytic_posterior(tmp_path, cells):
    em = ExactEmulator(parse_protocol(BD))
    hist = np.histogram(cells, bins=em.edges[0])[0]
    overflow = N_CELLS - hist.sum()
    settings = InferenceSettings(mode="likelihood", population=250, generations=5, seed=5)
    (res,) = run_chains([em], hist, overflow, settings, tmp_path / "abc.db", log=lambda s: None,
                        sampler_factory=BatchedSampler)
    assert res.epsilon[-1] == 1.0 and res.final_temperature_ok  # final population at temperature 1
    a, w = res.params[:, 0], res.weights
    mean = np.sum(w * a)
    sd = np.sqrt(np.sum(w * (a - mean) ** 2))
    ref_mean, ref_sd = truncated_gamma_moments(int(cells.sum()), N_CELLS, 1.0, 50.0)
    assert abs(mean - ref_mean) < 0.2 * ref_sd, (mean, ref_mean, ref_sd)
    assert abs(sd / ref_sd - 1) < 0.2, (sd, ref_sd)
    lo, hi = np.quantile(np.random.default_rng(0).choice(a, 4000, p=w), [0.05, 0.95])
    assert lo < TRUE_A < hi


def test_min_acceptance_rate_bounds_a_generation_and_the_run_ends_tempered(tmp_path, cells):
    """A generation stops after population / rate proposals; the run ends at the last full generation, with the
    tempered-posterior warning. With this seed generations 0-2 accept 100 of 323, 304 and 334 proposals and the last
    (temperature 1) needs 399 (rate 0.25), past the 357 that a rate of 0.28 allows."""
    em = ExactEmulator(parse_protocol(BD))
    hist = np.histogram(cells, bins=em.edges[0])[0]
    settings = InferenceSettings(population=100, generations=5, seed=2, min_acceptance_rate=0.28)
    with pytest.warns(UserWarning, match="lower --min-acceptance-rate"):
        (res,) = run_chains([em], hist, N_CELLS - hist.sum(), settings, tmp_path / "abc.db", log=lambda s: None)
    assert not res.final_temperature_ok and res.epsilon[-1] > 1.0 and len(res.epsilon) < 5
    assert len(res.epsilon) == 3 and np.all(res.n_simulations <= 100 / 0.28 + 1)  # none past its budget
    with pytest.raises(UserError, match="min-acceptance-rate"):
        InferenceSettings(min_acceptance_rate=1.5).check()
    never = InferenceSettings(population=100, generations=5, seed=2, min_acceptance_rate=0.9)  # not even the first
    with pytest.raises(UserError, match="no chain finished its first generation"), pytest.warns(UserWarning):
        run_chains([em], hist, N_CELLS - hist.sum(), never, tmp_path / "never.db", log=lambda s: None)


def test_multicore_sampler_reaches_the_exact_posterior(tmp_path, cells):
    """pyabc's multicore sampler (2 processes) on Poisson cells with a uniform prior: the exact posterior is
    Gamma(S + 1, n) (its truncation to [1, 50] is negligible); quantiles within 0.3 of its 90% width, or 3.5 Monte
    Carlo standard errors of the final population's ESS, as for the other samplers."""
    from scipy import stats

    em = ExactEmulator(parse_protocol(BD))
    hist = np.histogram(cells, bins=em.edges[0])[0]
    settings = InferenceSettings(mode="likelihood", population=200, generations=6, sampler="multicore", n_procs=2,
                                 seed=4)
    (res,) = run_chains([em], hist, N_CELLS - hist.sum(), settings, tmp_path / "abc.db", log=lambda s: None)
    assert res.params.shape == (200, 1) and np.isclose(res.weights.sum(), 1.0)
    assert res.epsilon[-1] == pytest.approx(1.0)
    post = stats.gamma(a=cells.sum() + 1, scale=1.0 / len(cells))
    qs = np.array([0.05, 0.5, 0.95])
    ref = post.ppf(qs)
    idx = np.random.default_rng(0).choice(len(res.weights), size=5000, p=res.weights)
    got = np.quantile(res.params[idx, 0], qs)
    se = np.sqrt(qs * (1 - qs) / max(float(res.ess[-1]), 1.0)) / post.pdf(ref)
    assert np.all(np.abs(got - ref) < np.maximum(0.3 * (ref[2] - ref[0]), 3.5 * se)), (got, ref, res.ess[-1])


def test_loguniform_prior_is_sampled_on_log_scale(tmp_path, cells):
    """a ~ loguniform(1, 50): pyabc sees log10_a; the posterior is Gamma(S, n) truncated to [1, 50]."""
    import pyabc

    proto = parse_protocol(BD.replace('prior = "uniform"', 'prior = "loguniform"'))
    em = ExactEmulator(proto)
    hist = np.histogram(cells, bins=em.edges[0])[0]
    settings = InferenceSettings(mode="likelihood", population=250, generations=5, seed=3)
    (res,) = run_chains([em], hist, N_CELLS - hist.sum(), settings, tmp_path / "abc.db", log=lambda s: None)
    a, w = res.params[:, 0], res.weights
    mean = np.sum(w * a)
    sd = np.sqrt(np.sum(w * (a - mean) ** 2))
    ref_mean, ref_sd = truncated_gamma_moments(int(cells.sum()) - 1, N_CELLS, 1.0, 50.0)
    assert abs(mean - ref_mean) < 0.2 * ref_sd and abs(sd / ref_sd - 1) < 0.25, (mean, sd, ref_mean, ref_sd)
    df, w_db = pyabc.History(f"sqlite:///{tmp_path / 'abc.db'}").get_distribution(m=0)
    assert list(df.columns) == ["log10_a"]
    np.testing.assert_allclose(np.sort(10 ** df["log10_a"].to_numpy()), np.sort(a))


def test_bulk_proposals_have_pyabc_law():
    """Vectorised proposals = pyabc's generate_valid_proposal in law (ancestor by weight + Gaussian kernel,
    rejected outside the prior's support)."""
    import pandas as pd
    import pyabc
    from pyabc.inference_util.inference_util import generate_valid_proposal

    from surrogate_abc.inference.pyabc_bridge.batched_samplers import bulk_proposals

    rng = np.random.default_rng(0)
    prior = pyabc.Distribution(x=pyabc.RV("uniform", 0, 1), y=pyabc.RV("uniform", -1, 3))
    X = pd.DataFrame({"x": rng.uniform(0, 1, 60) ** 3, "y": rng.uniform(-1, 2, 60)})
    tr = pyabc.MultivariateNormalTransition(scaling=4.0)
    tr.fit(X, rng.dirichlet(np.ones(60)))
    kw = dict(t=1, m=np.array([0]), p=np.array([1.0]), model_prior=pyabc.RV("rv_discrete", values=([0], [1])),
              parameter_priors=[prior], model_perturbation_kernel=pyabc.ModelPerturbationKernel(1, 0.7),
              transitions=[tr])
    np.random.seed(1)
    bulk = pd.DataFrame([dict(p) for _, p in bulk_proposals(3000, kw, from_prior=False)])
    ref = pd.DataFrame([dict(generate_valid_proposal(**kw)[1]) for _ in range(3000)])
    assert len(bulk) == 3000 and bulk["x"].between(0, 1).all() and bulk["y"].between(-1, 2).all()
    for c in ("x", "y"):
        assert stats.ks_2samp(bulk[c], ref[c]).pvalue > 1e-3, c


def test_prior_checks():
    proto = parse_protocol(BD)
    with pytest.raises(UserError, match=r"prior a ~ \[0.5, 20\] extends beyond .*domain \[1, 50\]"):
        check_prior_in_domain(prior_box(proto, {"a": (0.5, 20.0)}), proto.bounds(), ("a",), "exact:bd")
    check_prior_in_domain(prior_box(proto, {"a": (5.0, 20.0)}), proto.bounds(), ("a",), "exact:bd")
    with pytest.raises(UserError, match="dirichlet prior, which pyabc cannot represent"):
        prior_box(load_protocol("gaussian_mixture"))


def test_simulator_mode_cli_outputs_and_report(files, capsys):
    import arviz as az
    import pandas as pd

    out = files / "out"
    rc = main(["infer", str(files / "obs.h5"), "--emulator", f"exact:{files / 'bd.toml'}", "--mode", "simulator",
               "--population", "150", "--generations", "4", "--sampler", "single", "--chains", "2",
               "--out", str(out), "--seed", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "generation 3" in printed and "epsilon" in printed and "ESS" in printed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_netcdf(str(out / "posterior.nc"))
    for g in ("posterior", "sample_stats", "posterior_predictive", "observed_data"):
        assert g in idata.groups()
    assert idata.posterior["a"].shape == (2, 150)
    assert idata.posterior_predictive["hist"].shape == (2, 150, 80)
    assert idata.sample_stats["epsilon"].dims == ("chain", "generation")
    assert idata.posterior.attrs["emulator_sha256"] and "infer" in idata.posterior.attrs["command"]
    a = idata.posterior["a"].values.ravel()
    lo, hi = np.quantile(a, [0.05, 0.95])
    assert lo < TRUE_A < hi
    assert hi - lo < 10  # the data are informative: much narrower than the prior U(1, 50)
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert list(summary.index) == ["a"]
    for col in ("mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat"):
        assert col in summary.columns
    assert (out / "abc.db").stat().st_size > 0
    pngs = ("marginals.png", "pair.png", "ppc.png")
    for name in pngs:
        (out / name).unlink()
    assert main(["report", str(out / "posterior.nc")]) == 0
    for name in pngs:
        assert (out / name).stat().st_size > 1000


def _write(path, **data):
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f[k] = v
    return path


@pytest.mark.parametrize("data, message", [
    ({"x": np.array([1, -1])}, "'x' has negative counts"),
    ({"x": np.array([1.0, np.nan])}, "'x' contains NaN"),
    ({"x": np.array([1.25])}, "non-integer counts"),
    ({"x": np.zeros(0, int)}, "'x' is empty"),
    ({"protein": np.arange(3), "mrna": np.arange(2)}, "differ in length"),
    ({"foo": np.arange(3)}, "no known dataset"),
    ({"histogram": np.ones(3, int), "edges": np.arange(3.0)}, "needs 4 edges"),
    ({"protein": np.arange(3)}, "emulator needs dataset.* x"),
])
def test_cli_bad_observed(files, tmp_path, capsys, data, message):
    import re

    p = _write(tmp_path / "bad.h5", **data)
    rc = main(["infer", str(p), "--emulator", f"exact:{files / 'bd.toml'}", "--sampler", "single", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_cli_mean_outside_domain_and_missing_default(tmp_path, capsys, monkeypatch):
    p = _write(tmp_path / "hi.h5", protein=np.full(100, 400))
    import surrogate_abc.emulators.resolve as resolve_mod

    empty = tmp_path / "no_resources"
    empty.mkdir()
    monkeypatch.setattr(resolve_mod, "RESOURCES", empty)  # as in an installation without default emulators
    assert main(["infer", str(p), "--emulator", "exact:gene_protein", "--out", str(tmp_path)]) == 2
    assert "outside the range of means" in capsys.readouterr().err
    assert main(["infer", str(p), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "default emulator gene_protein.safetensors is not installed" in err and "--emulator" in err


def test_cli_not_hdf5_exit_status(tmp_path):
    p = tmp_path / "obs.h5"
    p.write_text("not hdf5")
    r = subprocess.run([sys.executable, "-m", "surrogate_abc.cli", "infer", str(p), "--emulator", "exact:gene_protein"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "not an HDF5 file" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_single_chain_summary_is_quiet(capsys):
    """One ABC run: r_hat is NaN and arviz's 'Shape validation failed' log line is not printed."""
    import arviz as az

    from surrogate_abc.inference.output import arviz_logger, summarise

    level = arviz_logger(az).level
    idata = az.from_dict(posterior={"k0": np.random.default_rng(0).random((1, 100))})
    table = summarise(idata)
    assert np.isnan(table.loc["k0", "r_hat"]) and table.loc["k0", "ess_bulk"] > 10
    assert "Shape validation" not in capsys.readouterr().err
    assert arviz_logger(az).level == level  # restored afterwards


def test_emulator_error_note_scales_with_cells():
    """N x KLD nats: the shipped protein emulator (KLD ~3e-4) is quiet on 1000 cells; a coarse one is not."""
    from types import SimpleNamespace

    from surrogate_abc.inference.infer import emulator_error_note

    good = SimpleNamespace(metadata={"validation_metrics": {"H2": 2.7e-4, "KLD": 2.6e-4}})
    coarse = SimpleNamespace(metadata={"validation_metrics": {"H2": 5e-3, "KLD": 4e-3}})
    assert emulator_error_note(good, 1000) is None
    assert emulator_error_note(coarse, 100) is None  # 0.4 nats
    note = emulator_error_note(coarse, 1000)
    assert note and "4.0 nats over 1000 cells" in note
    assert emulator_error_note(SimpleNamespace(metadata={}), 10**6) is None  # exact/unknown: nothing to say
    assert emulator_error_note(SimpleNamespace(metadata={"validation_metrics": {"H2": 0.01}}), 1000)


def test_likelihood_on_observed_categories_only_equals_the_full_one(tmp_path):
    """x_0 and the model restricted to the categories with observed cells give the full log-likelihood, for an
    emulator with category_probs (a trained conditional MDN: fast path) and one without (exact: full pmf)."""
    import torch

    from surrogate_abc.emulators.conditional import ConditionalMDN
    from surrogate_abc.emulators.emulator import Emulator
    from surrogate_abc.emulators.models import make_binning
    from surrogate_abc.inference.pyabc_bridge.parts import (
        EmulatorModel,
        observed_categories,
        observed_sumstat,
    )

    proto = load_protocol("gene_joint")
    torch.manual_seed(0)
    # float64: a random histogram puts cells where the network's probabilities are far below float32's range,
    # which the full pass (float32 pmf grid) floors and the observed-categories path (float64 walk) does not
    net = ConditionalMDN(5, "gamma_poisson", 2, make_binning(proto), hidden=(8,), head=(8,)).double()
    d = len(proto.param_names)
    emu = Emulator(net, proto, np.zeros(d), np.ones(d), proto.transforms())
    rng = np.random.default_rng(4)
    hist = np.zeros(emu.bins)
    np.add.at(hist, (rng.integers(0, 30, 200), rng.integers(0, 90, 200)), 1)
    theta = proto.sample(3, 1)
    cats = observed_categories(hist, 2)
    assert cats[-1] == emu.n_categories - 1 and len(cats) == np.count_nonzero(hist) + 1
    for with_overflow in (2, 0):
        cats = observed_categories(hist, with_overflow)
        full = EmulatorModel(emu, "likelihood", 200 + with_overflow).evaluate(theta)
        sub = EmulatorModel(emu, "likelihood", 200 + with_overflow, categories=cats).evaluate(theta)
        x0_full = observed_sumstat("likelihood", hist, with_overflow)
        x0_sub = observed_sumstat("likelihood", hist, with_overflow, cats)
        for f, s_ in zip(full, sub):
            np.testing.assert_allclose(multinomial_loglik(x0_sub["counts"], s_["p"]),
                                       multinomial_loglik(x0_full["counts"], f["p"]), rtol=1e-6)
    with pytest.raises(UserError, match="categories must lie"):
        emu.category_probs(theta, [emu.n_categories])
    exact = ExactEmulator(parse_protocol(BD))
    obs = np.bincount(np.random.default_rng(1).poisson(10, 50), minlength=80)[:80]
    c = observed_categories(obs, 0)
    ref = EmulatorModel(exact, "likelihood", 50).evaluate(np.array([[9.0]]))[0]["p"][c]
    np.testing.assert_allclose(EmulatorModel(exact, "likelihood", 50, categories=c).evaluate(np.array([[9.0]]))[0]["p"],
                               ref, rtol=1e-12)


def test_a_posterior_against_a_prior_bound_is_reported(files, tmp_path, capsys):
    """Poisson(10) cells under a prior a ~ U(1, 8): the posterior piles at 8, and the summary says that its interval
    is a lower bound (posterior.nc records it); under the full prior nothing is reported."""
    import json

    import arviz as az

    common = ["--emulator", f"exact:{files / 'bd.toml'}", "--population", "200", "--generations", "4",
              "--no-plots", "--check", "none"]
    out = tmp_path / "bound"
    assert main(["infer", str(files / "obs.h5"), "--prior", "a=1:8", "--out", str(out), *common]) == 0
    err = capsys.readouterr().err
    assert "a: the posterior piles against the prior's upper bound 8" in err and "lower bound" in err
    assert json.loads(az.from_netcdf(out / "posterior.nc").posterior.attrs["prior_bound"]) == ["a_high"]
    assert main(["infer", str(files / "obs.h5"), "--out", str(tmp_path / "free"), *common]) == 0
    assert "piles against" not in capsys.readouterr().err


def test_summary_hdi_of_a_log_uniform_parameter_is_taken_on_the_log_scale():
    """summarise: hdi_3%/hdi_97% of a log-uniform parameter (the run's `prior` attribute) are the log-scale HDI
    mapped back; a uniform parameter keeps arviz's natural-scale one."""
    import arviz as az

    from surrogate_abc.inference.output import summarise

    rng = np.random.default_rng(0)
    k0 = 10 ** rng.normal(-0.5, 0.6, (2, 500))
    d1 = rng.uniform(0.2, 0.9, (2, 500))
    idata = az.from_dict(posterior={"k0": k0, "d1": d1},
                         sample_stats={"lp": np.zeros((2, 500))})
    idata.sample_stats.attrs["prior"] = json.dumps({"k0": ["loguniform", 0.01, 10.0], "d1": ["uniform", 0.01, 1.0]})
    table = summarise(idata)
    lo, hi = np.exp(az.hdi(np.log(k0.ravel()), hdi_prob=0.94))
    assert (table.loc["k0", "hdi_3%"], table.loc["k0", "hdi_97%"]) == (round(lo, 3), round(hi, 3))
    assert table.loc["k0", "hdi_97%"] > az.hdi(k0.ravel(), hdi_prob=0.94)[1]
    np.testing.assert_allclose(table.loc["d1", ["hdi_3%", "hdi_97%"]].to_numpy(float),
                               az.hdi(d1.ravel(), hdi_prob=0.94), atol=1e-3)
