"""`sa.infer` leaves the caller's state alone: its figures (marginals.png, pair.png, ppc.png) keep a notebook's
matplotlib backend, write no MPLBACKEND and leave no pyplot figure open (every figure is a Figure object,
surrogate_abc/plots.py), and numpy's and Python's global random states are what they were (pyabc's chains seed
them inside and give them back, inference/run.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import BIRTH_DEATH_TOML, cli_env


def test_infer_keeps_the_callers_backend_environment_and_random_state(tmp_path):
    (tmp_path / "bd.toml").write_text(BIRTH_DEATH_TOML)
    script = textwrap.dedent("""
        import os, matplotlib
        matplotlib.use("svg")                       # a user's choice, e.g. a notebook's inline backend
        import matplotlib.pyplot as plt
        import random
        import h5py, numpy as np
        import surrogate_abc as sa
        np.random.seed(123)
        random.seed(5)
        np_before, py_before = np.random.get_state(), random.getstate()
        with h5py.File("obs.h5", "w") as f:
            f["x"] = np.random.default_rng(0).poisson(5.0, 200).astype(np.int64)
        idata = sa.infer("obs.h5", emulator="exact:bd.toml", out="out", population=40, generations=2,
                         exact_check="none")
        assert os.path.isfile("out/pair.png") and os.path.isfile("out/marginals.png")
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert "MPLBACKEND" not in os.environ
        assert plt.get_fignums() == [], plt.get_fignums()
        np_after = np.random.get_state()
        assert np_after[0] == np_before[0] and (np_after[1] == np_before[1]).all() and np_after[2:] == np_before[2:]
        assert random.getstate() == py_before
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={k: v for k, v in cli_env().items()
                                                                          if k != "MPLBACKEND"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
