"""The shipped synthetic examples (examples/observed_*.h5, written by examples/make_observed.py): layout, true
values, agreement with the exact stationary moments, reproducibility, and ABC recovery of the true rates."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from surrogate_abc.cli import main
from surrogate_abc.config import load_protocol
from surrogate_abc.data.observed import load_observed
from surrogate_abc.emulators.resolve import DEFAULT_EMULATORS, RESOURCES
from surrogate_abc.networks import gene_means

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FILES = {"observed_protein": "gene_protein", "observed_joint": "gene_joint"}
NEURAL = {k: RESOURCES / v for k, v in DEFAULT_EMULATORS.items()}
HAS_PROTEIN_EMULATOR = NEURAL["protein"].is_file()
HAS_JOINT_EMULATOR = NEURAL["joint"].is_file()

# With the exact FSP emulator (0.05-2 s per particle) the protein recovery test narrows the prior to a box around
# the truth (every bound a factor ~1.5 from the true value, or +-15 for mean_protein) so that the FSP solves stay
# cheap; with the default neural emulator it uses the protocol's full prior.
EXACT_BOX = {"k0": (0.5, 1.3), "k1": (1.0, 2.25), "v0": (0.4, 0.9), "d1": (0.2, 0.45), "mean_protein": (65.0, 95.0)}


def _load(stem: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_observed(EXAMPLES / f"{stem}.h5")


def _free_theta(protocol, obs) -> np.ndarray:
    return np.array([[obs.attrs[f"true_{k}"] for k in protocol.param_names]], dtype=float)


@pytest.mark.parametrize("stem", FILES)
def test_example_layout_and_true_values(stem):
    protocol = load_protocol(FILES[stem])
    obs = _load(stem)
    assert obs.n_cells == 1000 and obs.counts.shape == (1000, len(protocol.species))
    assert obs.species == protocol.species  # protein, or (mrna, protein) in that order
    assert obs.attrs["protocol"] == protocol.name and int(obs.attrs["n_cells"]) == 1000
    assert obs.attrs["description"] and "FSP" in obs.attrs["method"] and int(obs.attrs["seed"]) > 0
    assert obs.attrs["fsp_overflow"] + obs.attrs["fsp_tail_mass"] < 1e-8
    theta = _free_theta(protocol, obs)
    box = protocol.bounds()
    # strictly inside the prior, away from its edges (5% of the box width, on the log scale for loguniform)
    for j, (k, tr) in enumerate(zip(protocol.param_names, protocol.transforms())):
        f = np.log if tr == "log10" else (lambda v: v)
        lo, hi, v = f(box[j, 0]), f(box[j, 1]), f(theta[0, j])
        assert lo + 0.05 * (hi - lo) < v < hi - 0.05 * (hi - lo), k
    rates = protocol.rates(theta)[0]
    for k, v in zip(protocol.rate_names, rates):
        assert obs.attrs[f"true_rate_{k}"] == pytest.approx(v, rel=1e-12), k
    assert (EXAMPLES / f"{stem}.h5").stat().st_size < 100_000


@pytest.mark.parametrize("stem", FILES)
def test_example_means_match_exact_moments(stem):
    """Empirical mean of each species within 4 standard errors of the closed-form stationary mean (the standard
    error from the exact stationary variance of the moment equations); the data are clearly not Poisson."""
    protocol = load_protocol(FILES[stem])
    obs = _load(stem)
    rates = dict(zip(protocol.rate_names, protocol.rates(_free_theta(protocol, obs))[0]))
    mean, cov = protocol.network.stationary_moments(rates)
    m_mrna, m_prot = gene_means(*(rates[k] for k in ("k0", "k1", "v0", "d0", "v1", "d1")))
    red = protocol.network.reduced_species
    np.testing.assert_allclose(mean[red.index("protein")], m_prot, rtol=1e-10)
    np.testing.assert_allclose(mean[red.index("mrna")], m_mrna, rtol=1e-10)
    assert m_prot == pytest.approx(obs.attrs["true_mean_protein"], rel=1e-12)
    for j, s in enumerate(obs.species):
        i = red.index(s)
        se = np.sqrt(cov[i, i] / obs.n_cells)
        assert abs(obs.counts[:, j].mean() - mean[i]) < 4 * se, (s, obs.counts[:, j].mean(), mean[i], se)
        assert cov[i, i] / mean[i] > 5  # Fano factor: far from Poisson
        assert obs.counts[:, j].var() / obs.counts[:, j].mean() > 5


def test_make_observed_is_deterministic(tmp_path, monkeypatch):
    """Re-running the script reproduces the shipped protein file cell for cell (the joint one is the same code)."""
    spec = importlib.util.spec_from_file_location("make_observed", EXAMPLES / "make_observed.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_observed", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    (ex,) = [e for e in mod.EXAMPLES if e.stem == "observed_protein"]
    path = mod.make_example(ex, tmp_path)
    with h5py.File(path, "r") as new, h5py.File(EXAMPLES / "observed_protein.h5", "r") as old:
        np.testing.assert_array_equal(new["protein"][()], old["protein"][()])
        assert set(new.attrs) == set(old.attrs)
        for k in old.attrs:
            if k != "generator":
                assert np.all(np.asarray(new.attrs[k]) == np.asarray(old.attrs[k])), k


def _interval_check(nc: Path, truth: dict[str, float], informative: str, max_width: float | None) -> None:
    """Every true value lies inside the pooled posterior's central 90% interval; `informative`'s interval is
    narrower than max_width (the data do inform it) unless max_width is None."""
    import arviz as az

    idata = az.from_netcdf(str(nc))
    assert set(idata.posterior.data_vars) == set(truth)
    lines = []
    for k, v in truth.items():
        lo, hi = np.quantile(idata.posterior[k].values.ravel(), [0.05, 0.95])
        lines.append(f"{k}: true {v:.4g}, 90% [{lo:.4g}, {hi:.4g}]")
        assert lo <= v <= hi, "\n".join(lines)
    if max_width is None:
        return
    lo, hi = np.quantile(idata.posterior[informative].values.ravel(), [0.05, 0.95])
    assert hi - lo < max_width, f"{informative}: 90% interval [{lo:.4g}, {hi:.4g}] is not narrower than {max_width}"


def _protein_args(mode: str, out: Path) -> list[str]:
    if HAS_PROTEIN_EMULATOR:
        return ["--population", "300", "--generations", "8", "--chains", "2"]
    prior = [a for k, (lo, hi) in EXACT_BOX.items() for a in ("--prior", f"{k}={lo}:{hi}")]
    gens = "4" if mode == "likelihood" else "3"
    return ["--emulator", "exact:gene_protein", "--population", "60", "--generations", gens, "--chains", "1", *prior]


_SLOW_IF_EXACT = () if HAS_PROTEIN_EMULATOR else (pytest.mark.slow,)


@pytest.mark.parametrize("mode", [pytest.param(m, marks=_SLOW_IF_EXACT) for m in ("likelihood", "simulator")])
def test_infer_recovers_protein_example(tmp_path, mode, capsys):
    """`infer` on the shipped protein example: the true values lie inside the 90% posterior intervals; in likelihood
    mode (and in simulator mode with the neural emulator's longer run) the posterior of mean_protein is narrow (well
    below half the prior box's width). Simulator mode with 3 generations stops at the Hellinger noise floor of a
    1000-cell histogram (epsilon ~0.2), where mean_protein is still about as wide as the box."""
    obs = _load("observed_protein")
    protocol = load_protocol("gene_protein")
    out = tmp_path / mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 2 of 1000 cells lie beyond the last edge (600)
        rc = main(["infer", str(EXAMPLES / "observed_protein.h5"), "--mode", mode, "--sampler", "single",
                   "--seed", "3", "--out", str(out), *_protein_args(mode, out)])
    assert rc == 0, capsys.readouterr().err
    truth = {k: obs.attrs[f"true_{k}"] for k in protocol.param_names}
    lo, hi = EXACT_BOX["mean_protein"] if not HAS_PROTEIN_EMULATOR else protocol.bounds()[-1]
    narrow = mode == "likelihood" or HAS_PROTEIN_EMULATOR
    _interval_check(out / "posterior.nc", truth, "mean_protein", 0.5 * (hi - lo) if narrow else None)


@pytest.mark.skipif(not HAS_JOINT_EMULATOR,
                    reason=f"the default joint emulator {NEURAL['joint'].name} is not installed in surrogate_abc/"
                    "resources/, and the exact FSP joint emulator (2-4 s per particle) is too slow here")
@pytest.mark.parametrize("mode", ["likelihood", "simulator"])
def test_infer_recovers_joint_example(tmp_path, mode, capsys):
    """`infer` on the shipped joint example with the default joint emulator recovers the true values."""
    obs = _load("observed_joint")
    protocol = load_protocol("gene_joint")
    out = tmp_path / mode
    check = [] if mode == "likelihood" else ["--check", "none"]  # the exact check (~14 s of FSP) once is enough
    rc = main(["infer", str(EXAMPLES / "observed_joint.h5"), "--mode", mode, "--sampler", "single", "--seed", "3",
               "--population", "300", "--generations", "8", "--chains", "2", "--out", str(out), *check])
    assert rc == 0, capsys.readouterr().err
    truth = {k: obs.attrs[f"true_{k}"] for k in protocol.param_names}
    lo, hi = protocol.bounds()[protocol.param_names.index("mean_mrna")]
    _interval_check(out / "posterior.nc", truth, "mean_mrna", 0.5 * (hi - lo))
