"""Messages for users (surrogate_abc/report.py): one line each on stderr, no source paths, no warning categories,
no repeats, also for the warnings that `surrogate-abc infer` raises on data beyond the emulator's bins."""
from __future__ import annotations

import warnings

import h5py
import numpy as np

from surrogate_abc.report import Note, notes_from_warnings, notify, warn

from conftest import run_cli


def _assert_one_line_notes(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    for line in lines:
        assert line.startswith("surrogate-abc: "), stderr
        assert ".py:" not in line and "Warning:" not in line, stderr
        assert "Traceback" not in line, stderr
    return lines


def _observed(tmp_path, counts):
    with h5py.File(tmp_path / "obs.h5", "w") as f:
        f["x"] = np.asarray(counts, dtype=np.int64)
    return tmp_path / "obs.h5"


def test_infer_beyond_every_bin_prints_one_line_messages(tmp_path, bd_config):
    """conftest's birth-death protocol (bins 0..19): counts of 250000 lie beyond every bin."""
    obs = _observed(tmp_path, np.full(50, 250_000))
    r = run_cli(["infer", str(obs), "--emulator", f"exact:{bd_config}", "--population", "20", "--generations", "1",
                 "--out", str(tmp_path / "out")], cwd=tmp_path)
    lines = _assert_one_line_notes(r.stderr)
    assert r.returncode == 2
    assert any(line.startswith("surrogate-abc: note: ") and "50 of 50 cells lie beyond" in line for line in lines)
    assert lines[-1].startswith("surrogate-abc: error: ")
    assert len(lines) == len(set(lines))


def test_infer_run_with_overflow_cells_prints_only_notes(tmp_path, bd_config):
    """A whole run (pyabc, arviz, matplotlib inside; a true value, so arviz marks it): stderr holds our one-line
    notes and nothing else."""
    counts = np.concatenate([np.random.default_rng(0).poisson(5, 100), [25, 30]])
    obs = _observed(tmp_path, counts)
    with h5py.File(obs, "a") as f:
        f.attrs["true_a"] = 5.0
    r = run_cli(["infer", str(obs), "--emulator", f"exact:{bd_config}", "--population", "30", "--generations", "2",
                 "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = _assert_one_line_notes(r.stderr)
    assert all(line.startswith("surrogate-abc: note: ") for line in lines), r.stderr
    assert sum("2 of 102 cells lie beyond" in line for line in lines) == 1
    assert "generation 0" in r.stdout and "ESS" in r.stdout


def test_notes_from_warnings_one_line_each_once(capsys):
    with notes_from_warnings():
        for _ in range(3):
            warnings.warn("first\n  line two", RuntimeWarning)
        warn("a note")
        warn("a note")
        notify("said directly")  # notify writes every time; the block dedupes warnings
    err = capsys.readouterr().err
    assert err.splitlines() == ["surrogate-abc: note: first line two", "surrogate-abc: note: a note",
                                "surrogate-abc: note: said directly"]
    with warnings.catch_warnings(record=True) as caught:  # outside the CLI: an ordinary (catchable) warning
        warnings.simplefilter("always")
        warn("library use")
    assert [(w.category, str(w.message)) for w in caught] == [(Note, "library use")]
    assert caught[0].filename == __file__
