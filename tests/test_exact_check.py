"""--check exact and --reweight exact: an emulator that is exact in disguise checks to 0 nats; a deliberately
perturbed one is caught by the check, and reweighting its ABC posterior recovers the exact (closed-form) posterior."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from surrogate_abc.data.observed import Observed, observed_histogram
from surrogate_abc.emulators.base import EmulatorBase
from surrogate_abc.emulators.exact import exact_emulator
from surrogate_abc.inference.exact_check import (
    check_draws,
    check_exact,
    estimate_seconds,
    exact_counterpart,
    reweight_exact,
)
from surrogate_abc.inference.run import InferenceSettings, run_chains


class Perturbed(EmulatorBase):
    """The exact Poisson model evaluated at rate x `factor`: an emulator with a known, systematic error."""

    def __init__(self, exact, factor: float):
        self.exact, self.factor = exact, factor
        self.protocol, self.source, self.metadata = exact.protocol, f"perturbed x{factor}", {}

    def _flat_probs(self, arr):
        return self.exact._flat_probs(arr * self.factor)


@pytest.fixture
def poisson_data(tmp_path):
    from conftest import write_protocol

    exact = exact_emulator(str(write_protocol(tmp_path)))
    x = np.random.default_rng(21).poisson(7.0, 300)
    obs = Observed("synthetic", ("mrna",), len(x), counts=x[:, None])
    hist, overflow = observed_histogram(obs, tuple(exact.edges))
    return exact, hist, overflow, x


def test_check_of_an_exact_emulator_gives_zero_nats(poisson_data):
    exact, hist, overflow, _ = poisson_data
    em = Perturbed(exact, 1.0)
    ref = exact_counterpart(em)
    assert ref is not None and exact_counterpart(exact) is None  # an exact emulator is not checked against itself
    draws = np.random.default_rng(0).uniform(6.0, 8.0, size=(200, 1))
    res = check_exact(em, ref, draws, hist, overflow)
    assert len(res.h2) == 50 and np.abs(res.dloglik).max() < 1e-9 and res.h2.max() < 1e-12
    off = check_exact(Perturbed(exact, 1.05), ref, draws, hist, overflow)
    assert off.h2.mean() > 1e-4 and abs(off.dloglik.mean()) > 1.0  # 5% off in the rate is several nats at 300 cells
    assert "nats" in off.line()
    seconds, first_row = estimate_seconds(ref, check_draws(draws))  # infer's order: estimate, then the check
    again = check_exact(Perturbed(exact, 1.05), ref, draws, hist, overflow, first_row=first_row)
    assert seconds >= 0 and np.array_equal(again.theta, off.theta)
    assert np.allclose(again.h2, off.h2, rtol=1e-12) and np.allclose(again.dloglik, off.dloglik, rtol=1e-12)


def test_reweighting_a_perturbed_emulator_recovers_the_exact_posterior(tmp_path, poisson_data):
    """Poisson counts, log-uniform prior on a: the exact posterior is Gamma(sum x, n) (truncation to the prior box
    is negligible). The emulator is 2% off, about one posterior sd; its ABC posterior is shifted, the reweighted
    one is not."""
    exact, hist, overflow, x = poisson_data
    em = Perturbed(exact, 1.02)
    s = InferenceSettings(population=1000, generations=8, chains=2, seed=5)
    chains = run_chains([em], hist, overflow, s, tmp_path / "abc.db", log=lambda _m: None)
    truth = stats.gamma(a=x.sum(), scale=1.0 / len(x)).ppf([0.05, 0.5, 0.95])
    width = truth[2] - truth[0]

    def quantiles(weights):
        p = np.concatenate([c.params[:, 0] for c in chains])
        w = np.concatenate([w / len(chains) for w in weights])
        order = np.argsort(p)
        cdf = np.cumsum(w[order]) / w.sum()
        return np.interp([0.05, 0.5, 0.95], cdf, p[order])

    before = quantiles([c.weights for c in chains])
    rw = reweight_exact(em, exact_counterpart(em), chains, hist, overflow)
    after = quantiles(rw.weights)
    assert abs(before[1] - truth[1]) > 0.25 * width  # the perturbed emulator's posterior is off
    assert np.all(np.abs(after - truth) < 0.1 * width), (after, truth)
    assert rw.healthy(s.algorithm.population) and "ESS" in rw.line()


def count_netcdf_writes(monkeypatch) -> list[str]:
    """The paths InferenceData.to_netcdf writes to from now on in this test (it still writes them)."""
    import arviz as az

    written: list[str] = []
    to_netcdf = az.InferenceData.to_netcdf

    def counted(self, filename, *args, **kwargs):
        written.append(str(filename))
        return to_netcdf(self, filename, *args, **kwargs)

    monkeypatch.setattr(az.InferenceData, "to_netcdf", counted)
    return written


def test_infer_stores_the_check_and_the_reweighted_posterior(tmp_path, poisson_data, monkeypatch):
    """posterior.nc is written once, after the exact check and the reweighting have added their groups (it was
    written before them and again after); the returned InferenceData holds the same groups, in memory."""
    import arviz as az

    from surrogate_abc.inference.infer import run_dataset

    exact, hist, overflow, x = poisson_data
    obs = Observed("synthetic", ("mrna",), len(x), counts=x[:, None])
    tables = []
    written = count_netcdf_writes(monkeypatch)
    s = InferenceSettings(population=200, generations=6, chains=2, seed=1, reweight="exact", plots=False)
    result = run_dataset(obs, hist, overflow, [(Perturbed(exact, 1.01), "0" * 64)], s, tmp_path / "out",
                         log=lambda _m: None, on_table=tables.append)
    nc = result.path
    assert nc == tmp_path / "out" / "posterior.nc" and len(written) == 1, written
    assert not list((tmp_path / "out").glob("*.partial"))
    assert {"diagnostics", "posterior_exact"} <= set(result.idata.groups())
    assert result.table == tables[0] and len(result.chains) == 2
    idata = az.from_netcdf(str(nc))
    assert set(idata.groups()) == set(result.idata.groups())
    assert np.array_equal(idata.posterior_exact["a"].values, result.idata.posterior_exact["a"].values)
    assert {"diagnostics", "posterior_exact"} <= set(idata.groups())
    assert idata.diagnostics.sizes["check_draw"] == 50 and "check_dloglik_sd" in idata.diagnostics.attrs
    assert idata.posterior_exact.sizes["draw"] == idata.posterior.sizes["draw"]
    assert (tmp_path / "out" / "summary_exact.csv").is_file()
    assert len(tables) == 2 and "posterior_exact" in tables[1]


def test_check_is_skipped_with_a_note_over_its_budget(tmp_path, poisson_data):
    from surrogate_abc.inference.infer import run_dataset
    from surrogate_abc.report import Note

    exact, hist, overflow, x = poisson_data
    obs = Observed("synthetic", ("mrna",), len(x), counts=x[:, None])
    s = InferenceSettings(population=100, generations=3, chains=1, seed=1, plots=False, check_budget=1e-9)
    with pytest.warns(Note, match="exact check skipped"):
        run_dataset(obs, hist, overflow, [(Perturbed(exact, 1.0), "0" * 64)], s, tmp_path / "o", log=lambda _m: None)


def test_posterior_is_written_without_the_exact_groups_when_the_check_fails(tmp_path, poisson_data, monkeypatch):
    """A failing exact check still leaves posterior.nc (as when it was written before the check), written once."""
    import arviz as az

    from surrogate_abc.inference import exact_check
    from surrogate_abc.inference.infer import run_dataset

    def broken(*_args, **_kwargs):
        raise RuntimeError("solver blew up")

    monkeypatch.setattr(exact_check, "check_exact", broken)
    written = count_netcdf_writes(monkeypatch)
    exact, hist, overflow, x = poisson_data
    obs = Observed("synthetic", ("mrna",), len(x), counts=x[:, None])
    s = InferenceSettings(population=50, generations=2, chains=1, seed=1, plots=False)
    with pytest.raises(RuntimeError, match="solver blew up"):
        run_dataset(obs, hist, overflow, [(Perturbed(exact, 1.0), "0" * 64)], s, tmp_path / "o", log=lambda _m: None)
    assert len(written) == 1, written
    idata = az.from_netcdf(str(tmp_path / "o" / "posterior.nc"))
    assert "posterior" in idata.groups() and "diagnostics" not in idata.groups()
    assert (tmp_path / "o" / "summary.csv").is_file()


def test_run_dataset_without_writing_leaves_only_abc_db(tmp_path, poisson_data, monkeypatch):
    """write=False (sa.infer(out=None)): the InferenceData, with the exact check's group, only in memory."""
    from surrogate_abc.inference.infer import run_dataset

    written = count_netcdf_writes(monkeypatch)
    exact, hist, overflow, x = poisson_data
    obs = Observed("synthetic", ("mrna",), len(x), counts=x[:, None])
    s = InferenceSettings(population=50, generations=2, chains=2, seed=1)
    tables: list[str] = []
    result = run_dataset(obs, hist, overflow, [(Perturbed(exact, 1.0), "0" * 64)], s, tmp_path / "o",
                         log=lambda _m: None, on_table=tables.append, write=False)
    assert result.path is None and written == [] and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["abc.db"]
    assert "diagnostics" in result.idata.groups() and tables == [result.table] and "mean" in result.table
    post, w = result.weighted_particles()
    assert set(post) == {"a"} and len(w) == 100 and w.sum() == pytest.approx(1.0)


def test_exact_counterpart_of_the_joint_gene_model_is_fsp_where_its_box_holds_else_the_generating_function():
    """The joint emulator's exact reference (check, reweighting), exact over the whole prior: FSP where its box
    holds the law (cheap there), equal to the generating-function law; in the bursty corner, where the box
    (max_states 5e5) would miss ~1e-2 of the mass, the generating function, with the exact Beta-Poisson mRNA
    marginal."""
    from surrogate_abc.config import load_protocol
    from surrogate_abc.emulators.exact import ExactEmulator
    from surrogate_abc.simulate.marginal_bins import binned_beta_poisson

    exact = ExactEmulator(load_protocol("gene_joint"))
    assert exact.solves_each_set and not exact.uses_fsp and exact.can_thin
    theta = np.array([[1.55, 7.52, 0.0826, 35.0, 65.3],        # v0 = 318: FSP's box holds it (tail 4e-11)
                      [0.3, 5.0, 0.5, 40.0, 150.0]])           # v0 = 707: the box misses mass
    maps = [dict(zip(exact.protocol.rate_names, r)) for r in exact.protocol.rates(theta)]
    assert exact.fsp_holds(maps[0]) and not exact.fsp_holds(maps[1])
    law = exact._flat_probs(theta)
    probs, over = exact._pmf_pgf(theta[:1])
    assert np.abs(law[0] - np.append(probs.ravel(), over)).sum() < 1e-8  # FSP's law, as the generating function's
    rates = maps[1]
    marg, _ = binned_beta_poisson({"k_on": np.array([rates["k0"]]), "k_off": np.array([rates["k1"]]),
                                   "v": np.array([rates["v0"]]), "d": np.array([rates["d0"]])}, exact.edges[0], 200)
    rows = law[1, :-1].reshape(len(exact.edges[0]) - 1, -1).sum(axis=1)
    assert np.abs(rows - marg[0])[:10].max() < 5e-9  # low mRNA bins (observed 5e-10: proteins beyond 600)
