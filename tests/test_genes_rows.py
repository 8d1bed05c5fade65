"""The per-gene path (`infer TABLE --method smc`) builds each genes.csv row from run_dataset's InferenceData in
memory: no posterior.nc is read back during the run, and the rows are those of the files it leaves."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import write_protocol, write_table


def test_gene_rows_come_from_memory_and_match_the_written_posteriors(tmp_path, monkeypatch):
    import arviz as az

    from surrogate_abc.inference.genes import gene_row, infer_table, plan_tasks
    from surrogate_abc.inference.run import InferenceSettings

    rng = np.random.default_rng(7)
    table = write_table(tmp_path / "counts.csv", {"A": rng.poisson(3.0, 200), "B": rng.poisson(9.0, 200)})
    proto = write_protocol(tmp_path)
    settings = InferenceSettings(population=60, generations=2, chains=2, seed=3, plots=False, chain_jobs=1)

    def no_reading(*_args, **_kwargs):
        raise AssertionError("a posterior.nc was read back during the run")

    with monkeypatch.context() as m:
        m.setattr(az, "from_netcdf", no_reading)
        m.setattr(az.InferenceData, "from_netcdf", no_reading)
        csv_path, printed = infer_table(table, f"exact:{proto}", settings, tmp_path / "out", jobs=1,
                                        log=lambda _m: None, progress=False)
    assert csv_path == tmp_path / "out" / "genes.csv" and "A" in printed and "B" in printed

    import csv

    rows = list(csv.DictReader(csv_path.open()))
    tasks = plan_tasks(table, [f"exact:{proto}"], settings, tmp_path / "out")
    for task, row in zip(tasks, rows):
        folder = tmp_path / "out" / task.name
        assert {p.name for p in folder.iterdir()} >= {"posterior.nc", "abc.db", "summary.csv"}
        idata = az.from_netcdf(str(folder / "posterior.nc"))
        assert idata.posterior.attrs["gene"] == task.name
        from_file = gene_row(task, idata)  # the row the old code built from the file
        idata.close()
        assert row["gene"] == from_file["gene"]
        for key, value in from_file.items():
            if isinstance(value, float):
                assert float(row[key]) == pytest.approx(float(f"{value:.6g}"), rel=1e-12, nan_ok=True), key
