"""`surrogate-abc calibrate` end to end on a log-uniform birth-death (Poisson) protocol with its exact model:
outputs written, a rerun reuses every finished dataset, bad input exits 2 with one line."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_protocol

ARGS = ["--datasets", "4", "--cells", "200", "--population", "60", "--generations", "4", "--jobs", "2", "--quiet"]


@pytest.fixture
def bd_poisson(tmp_path: Path) -> Path:
    return write_protocol(tmp_path, "bd_calibrate", high=20.0, low=1.0, edges="{ start = 0, stop = 60, width = 1 }")


def test_calibrate_writes_table_ranks_and_reuses_finished_datasets(tmp_path, bd_poisson):
    out = tmp_path / "cal"
    args = ["calibrate", "--emulator", f"exact:{bd_poisson}", *ARGS, "--out", str(out)]
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 datasets (0 finished earlier, reused)" in r.stdout
    assert "posterior_predictive" in r.stdout and "cover 90%" in r.stdout
    for name in ("calibration.csv", "datasets.csv", "sbc_ranks.png"):
        assert (out / name).is_file(), name
    with open(out / "datasets.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    for r in rows:  # a 0/1 flag each (an empty string is no answer), and a truth inside the 50% interval is inside the 90%
        assert 0 <= int(r["rank_a"]) <= 99 and r["in50_a"] in ("0", "1") and r["in90_a"] in ("0", "1"), r
        assert int(r["in50_a"]) <= int(r["in90_a"]), r
    with open(out / "calibration.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["parameter"] for t in table] == ["a", "posterior_predictive"]
    assert float(table[0]["band90_lo"]) <= float(table[0]["band90_hi"]) and 0 <= float(table[0]["coverage_90"]) <= 1
    assert 0 <= float(table[1]["hellinger_mean"]) < 0.2
    assert float(table[0]["rank_mean"]) == pytest.approx(np.mean([int(r["rank_a"]) for r in rows]))
    results = sorted(out.glob("ds_*/result.json"))
    assert len(results) == 4 and all((p.parent / "observed.h5").is_file() for p in results)
    mtimes = [p.stat().st_mtime_ns for p in results]

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 datasets (4 finished earlier, reused)" in again.stdout
    assert [p.stat().st_mtime_ns for p in results] == mtimes  # not rerun
    assert "rank z" in again.stdout and f"{float(table[0]['rank_z']):+.1f}" in again.stdout  # the ranks' shift

    other = run_cli([a if a != "200" else "100" for a in args], cwd=tmp_path)  # --cells 100 into the same --out
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 1 and "made with cells 200, this run has 100" in lines[0], other.stderr
    assert [p.stat().st_mtime_ns for p in results] == mtimes


@pytest.mark.parametrize("extra, message", [
    (["--emulator", "exact:no_such_protocol"], "no_such_protocol"),
    (["--emulator", "missing.safetensors"], "file not found"),
    (["--protocol", "no_such_protocol"], "no_such_protocol"),
    (["--emulator", "EXACT", "--datasets", "0"], "--datasets must be >= 1"),
])
def test_calibrate_bad_input_exits_2_with_one_line(tmp_path, bd_poisson, extra, message):
    extra = [f"exact:{bd_poisson}" if a == "EXACT" else a for a in extra]
    args = ["calibrate", "--datasets", "2", "--cells", "10", "--out", str(tmp_path / "cal"), *extra]
    r = run_cli(args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surrogate-abc: error:") and message in lines[0], r.stderr
    assert not (tmp_path / "cal").exists()  # nothing written before the input is checked


def test_a_failed_dataset_is_reported_in_one_line_and_the_others_go_on(monkeypatch):
    from surrogate_abc.inference.calibration import study as cal
    from surrogate_abc.report import Note

    def fake(task):
        if task.index == 1:
            raise RuntimeError("solver\nblew up")
        return {"index": task.index}

    monkeypatch.setattr(cal, "infer_dataset", fake)
    tasks = [cal.Task(i, (1.0,), None, "exact:x", "unused", 0, 10, (10,), None) for i in range(3)]
    with pytest.warns(Note, match="dataset 1 failed: RuntimeError: solver blew up"):
        rows, failed = cal.run_tasks(tasks, jobs=1, progress=False)
    assert [r["index"] for r in rows] == [0, 2] and [i for i, _ in failed] == [1]


def test_weighted_posterior_of_a_bursty_model_comes_from_abc_db(tmp_path):
    """A bursty model's posterior.nc also holds burst_frequency and burst_size, which abc.db does not: the weighted
    final populations are still read from abc.db (they once fell back to equal-weight draws without a word)."""
    from surrogate_abc.api import infer_genes
    from surrogate_abc.inference.calibration.study import load_weighted_posterior

    rng = np.random.default_rng(1)
    table = tmp_path / "c.csv"
    table.write_text("g\n" + "\n".join(str(v) for v in rng.negative_binomial(2.0, 0.2, 300)) + "\n")
    infer_genes(table, emulator="exact:negbin", out=tmp_path / "o", method="smc", population=100, generations=2,
                jobs=1, plots=False, exact_check="none", seed=2)
    idata, post, w = load_weighted_posterior(tmp_path / "o" / "g")
    assert "burst_frequency" in idata.posterior.data_vars and "burst_frequency" not in post
    assert set(post) == {"k0", "b"} and len(w) == 100 and w.sum() == pytest.approx(1.0)
    assert w.std() > 0  # importance weights of the final population, not equal-weight draws
    (tmp_path / "o" / "g" / "abc.db").unlink()
    _, post, w = load_weighted_posterior(tmp_path / "o" / "g")
    assert np.allclose(w, w[0])  # without the database: the equal-weight draws


def test_dataset_metrics_come_from_memory_and_equal_those_of_the_files(tmp_path, bd_poisson, monkeypatch):
    """A dataset's metrics come from infer's result in memory (no posterior.nc read back) and equal those computed
    from the files it wrote, as the study did before (abc.db's weighted final populations, posterior.nc)."""
    import math
    from types import SimpleNamespace

    import arviz as az

    from surrogate_abc.inference.calibration import study as cal
    from surrogate_abc.inference.run import InferenceSettings

    settings = InferenceSettings(population=60, generations=3, chains=2, exact_check="none", plots=False,
                                 chain_jobs=1)
    _, tasks = cal.plan(f"exact:{bd_poisson}", 1, 150, settings, 4, tmp_path / "cal", None)
    seen = {}

    def no_reading(*_args, **_kwargs):
        raise AssertionError("a posterior.nc was read back during the run")

    def capture(task, result, pmf, overflow):
        seen.update(result=result, pmf=pmf, overflow=overflow)
        return metrics(task, result, pmf, overflow)

    metrics = cal.dataset_metrics
    with monkeypatch.context() as m:
        m.setattr(az, "from_netcdf", no_reading)
        m.setattr(az.InferenceData, "from_netcdf", no_reading)
        m.setattr(cal, "dataset_metrics", capture)
        row = cal.infer_dataset(tasks[0])

    out = Path(tasks[0].out)
    idata, post, w = cal.load_weighted_posterior(out)
    mem_post, mem_w = seen["result"].weighted_particles()
    assert np.array_equal(w, mem_w) and set(post) == set(mem_post) == {"a"}
    assert np.array_equal(post["a"], mem_post["a"])
    from_files = cal.dataset_metrics(tasks[0], SimpleNamespace(idata=idata, weighted_particles=lambda: (post, w)),
                                     seen["pmf"], seen["overflow"])
    assert from_files and set(from_files) <= set(row)
    for key, value in from_files.items():
        same = value == row[key] or (isinstance(value, float) and math.isnan(value) and math.isnan(row[key]))
        assert same, (key, value, row[key])
