"""`surrogate-abc simulate`: draw parameter sets, simulate each, write one resumable HDF5 file.

Flow: theta = protocol.sample(n, seed) -> rates, initial counts, per-set seeds (all depend only on the seed)
-> rank 0 creates or re-opens `<out>.partial` -> the pending sets are done in rounds of `chunk_size`, split
over MPI ranks; rank 0 writes each round's results and only then marks them done -> when every set is done
the file gets complete=True and is renamed to `<out>`. Rerunning the same command resumes.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from .. import __version__
from ..config import Protocol
from ..data.schema import FORMAT_VERSION, SIMULATION_FORMAT, attr_str, open_ours, partial_path
from ..errors import DataFileError, UserError
from ..networks import ReactionNetwork
from .engines import SetEngine, available_engines, closed_form, grid_kind, grid_layout, resolve_engine
from .mpi import get_comm
from .results import RunSettings, SetResult
from .ssa import set_seeds


def check_output_path(out: Path) -> None:
    """UserError unless `out` can be written: its directory exists and is writable and it is not a directory."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UserError(f"{out}: --out is a directory; give a file path such as {out / 'sim.h5'}")
    if not parent.is_dir():
        raise UserError(f"{out}: output directory {parent} does not exist; create it or choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: output directory {parent} is not writable; choose another --out")


# ------------------------------------------------------------------------------------------- the file
class SimulationFile:
    """Creates, checks, commits to and finalises one simulation file (rank 0 only)."""

    REQUIRED = ("theta", "rates", "initial", "seeds", "done", "wall_time", "grid", "overflow", "tail_mass")

    def __init__(self, out: Path, protocol: Protocol, settings: RunSettings):
        self.out, self.partial = Path(out), partial_path(out)
        self.protocol, self.settings = protocol, settings

    # ---- checks
    def mismatch(self, f: h5py.File, theta: np.ndarray) -> list[str]:
        """Settings in which an existing file differs from this run (empty when it matches)."""
        s, diffs = self.settings, []
        if attr_str(f, "config_toml") != self.protocol.toml_text:
            diffs.append(f"protocol config (file: {attr_str(f, 'protocol')})")
        for key, want in (("n", s.n), ("seed", s.seed), ("samples", s.samples)):
            got = int(f.attrs.get(key, -1))
            if got != want:
                diffs.append(f"{key} {got} vs {want}")
        if attr_str(f, "engine") != s.engine:
            diffs.append(f"engine {attr_str(f, 'engine')} vs {s.engine}")
        if ("raw" in f) != s.keep_raw:
            diffs.append(f"--keep-raw {'on' if 'raw' in f else 'off'} vs {'on' if s.keep_raw else 'off'}")
        if not diffs and not np.array_equal(f["theta"][...], theta):
            diffs.append("parameter draws (theta)")
        return diffs

    def check_existing(self, path: Path, theta: np.ndarray) -> None:
        """UserError unless `path` is a simulation file of exactly these settings."""
        try:
            f = open_ours(path, SIMULATION_FORMAT, required=self.REQUIRED)
        except DataFileError as exc:
            raise UserError(f"{exc} (delete {path} or choose another --out)") from None
        with f:
            diffs = self.mismatch(f, theta)
        if diffs:
            raise UserError(f"{path}: exists but was made with different settings ({'; '.join(diffs)}); "
                            f"delete it or choose another --out")

    def completed_already(self, theta: np.ndarray) -> bool:
        """True when `out` exists, is complete and matches; UserError when it exists and does not."""
        if not self.out.exists():
            return False
        self.check_existing(self.out, theta)
        with h5py.File(self.out, "r") as f:
            if not bool(f.attrs.get("complete", False)) or not bool(np.all(f["done"][...])):
                raise UserError(f"{self.out}: exists but is not complete; delete it or choose another --out")
        return True

    # ---- creation / resume
    def create_or_resume(self, theta: np.ndarray, rates: np.ndarray, initial: np.ndarray, seeds: np.ndarray,
                         command: str) -> np.ndarray:
        """Open the .partial file (creating it atomically if absent); return the indices still to do."""
        if self.partial.exists():
            self.check_existing(self.partial, theta)
        else:
            tmp = self.partial.with_name(self.partial.name + ".new")
            try:
                self._create(tmp, theta, rates, initial, seeds, command)
                os.replace(tmp, self.partial)
            except OSError as exc:
                raise UserError(f"{self.out}: cannot write {tmp} ({exc.strerror or exc}); choose another --out") from None
        with h5py.File(self.partial, "r") as f:
            return np.flatnonzero(~f["done"][...].astype(bool))

    def _create(self, path: Path, theta, rates, initial, seeds, command: str) -> None:
        p, s = self.protocol, self.settings
        n = s.n
        shape, dtype = grid_layout(p, s.engine)
        with h5py.File(path, "w") as f:
            a = f.attrs
            a["format"], a["format_version"], a["package_version"] = SIMULATION_FORMAT, FORMAT_VERSION, __version__
            a["protocol"], a["network"], a["engine"] = p.name, p.network.name, s.engine
            a["seed"], a["samples"], a["n"] = s.seed, s.samples, n
            a["species"], a["param_names"], a["rate_names"] = list(p.species), list(p.param_names), list(p.rate_names)
            a["config_toml"], a["complete"], a["command"] = p.toml_text, False, command
            a["network_toml"] = p.network_toml
            f.create_dataset("theta", data=theta.astype(np.float64)).attrs["names"] = list(p.param_names)
            f.create_dataset("rates", data=rates.astype(np.float64)).attrs["names"] = list(p.rate_names)
            f.create_dataset("initial", data=initial.astype(np.int64)).attrs["names"] = list(p.network.species)
            f.create_dataset("seeds", data=seeds.astype(np.uint64))
            f.create_dataset("done", data=np.zeros(n, dtype=bool))
            f.create_dataset("wall_time", data=np.zeros(n))
            g = f.create_dataset("grid", shape=(n, *shape), dtype=dtype, chunks=(1, *shape), compression="gzip",
                                 compression_opts=4, shuffle=True, fillvalue=0)
            g.attrs["kind"] = grid_kind(p, s.engine)
            f.create_dataset("overflow", data=np.zeros(n))
            f.create_dataset("tail_mass", data=np.zeros(n))
            if s.engine == "fsp":
                assert isinstance(p.network, ReactionNetwork)  # resolve_engine offers fsp for these only
                f.create_dataset("truncation", data=np.zeros((n, len(p.network.reduced_species)), dtype=np.int64))
            if s.engine == "ssa" and s.keep_raw:
                k = len(p.species)
                f.create_dataset("raw", shape=(n, s.samples, k), dtype=np.int32, chunks=(1, s.samples, k),
                                 compression="gzip", compression_opts=4, shuffle=True, fillvalue=0)
            if grid_kind(p, s.engine) == "binned_pmf":
                for ax in p.axes:
                    f.create_dataset(f"edges/{ax.species}", data=np.asarray(ax.edges, dtype=np.float64))

    def commit(self, results: Sequence[SetResult]) -> None:
        """Write results, THEN mark them done, then flush: a kill at any point loses no committed set."""
        if not results:
            return
        with h5py.File(self.partial, "a") as f:
            for r in sorted(results, key=lambda r: r.index):
                i = r.index
                f["grid"][i] = r.grid
                f["overflow"][i] = r.overflow
                f["wall_time"][i] = r.wall_time
                f["tail_mass"][i] = r.tail_mass
                if r.truncation is not None and "truncation" in f:
                    t = np.zeros(f["truncation"].shape[1], dtype=np.int64)
                    t[: len(r.truncation)] = r.truncation[: len(t)]
                    f["truncation"][i] = t
                if r.raw is not None and "raw" in f:
                    f["raw"][i] = r.raw
            f.flush()
            done = f["done"][...]
            done[[r.index for r in results]] = True
            f["done"][...] = done
            f.flush()

    def finalize(self) -> None:
        """Mark complete and rename .partial -> out (only once every set is done)."""
        with h5py.File(self.partial, "a") as f:
            if not bool(np.all(f["done"][...])):  # pragma: no cover - guarded by the caller
                raise RuntimeError(f"{self.partial}: finalize called with sets still pending")
            f.attrs["complete"] = True
            f.flush()
        os.replace(self.partial, self.out)


# ------------------------------------------------------------------------------------------- summary
def summarize(out: Path, computed: int, total_seconds: float, ranks: int) -> str:
    """A small table describing a complete simulation file."""
    with h5py.File(out, "r") as f:
        n, eng, samples = int(f.attrs["n"]), attr_str(f, "engine"), int(f.attrs["samples"])
        wt, over, tail = f["wall_time"][...], f["overflow"][...], f["tail_mass"][...]
        proto = attr_str(f, "protocol")
    over_frac = over / samples if eng == "ssa" else over
    rows = [
        ("protocol", proto),
        ("engine", eng),
        ("sets", f"{n} ({computed} computed now, {n - computed} already done)"),
        ("samples/set", str(samples) if eng == "ssa" else "- (exact distribution)"),
        ("ranks", str(ranks)),
        ("wall time/set [s]", f"mean {wt.mean():.4g}  min {wt.min():.4g}  max {wt.max():.4g}"),
        ("overflow fraction", f"mean {over_frac.mean():.3g}  max {over_frac.max():.3g}"),
    ]
    if eng == "fsp":
        rows.append(("FSP tail mass", f"max {tail.max():.3g}"))
    if eng == "pgf":
        rows.append(("pgf error estimate", f"max {tail.max():.3g} (per probability)"))
    rows += [("total wall time [s]", f"{total_seconds:.1f}"), ("output", str(out))]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


# ------------------------------------------------------------------------------------------- driver
def default_chunk_size(engine: str, ranks: int) -> int:
    """Sets per round/commit: a few per rank (SSA/FSP sets take seconds), many for the closed form."""
    return 1024 if engine == "exact" else 4 * ranks


def run_simulation(protocol: Protocol, n: int, out: str | os.PathLike, samples: int | None = None, seed: int = 0,
                   engine: str | None = None, keep_raw: bool = False, chunk_size: int | None = None,
                   command: str = "", progress: bool = True) -> str | None:
    """Simulate n parameter sets of `protocol` into `out` (resumable; MPI-parallel under mpiexec).

    Returns a summary table on rank 0 and None on other ranks. Raises UserError on bad input before any
    computing; every rank raises it, so no rank waits in a collective.
    """
    t_start = time.perf_counter()
    comm = get_comm()
    out = Path(out)
    # Deterministic checks and draws: identical on every rank, so errors are raised everywhere alike.
    settings = _settings(protocol, n, samples, seed, engine, keep_raw, chunk_size)
    theta = protocol.sample(settings.n, settings.seed)  # ConfigError for n <= 0
    rates = protocol.rates(theta)
    initial = protocol.initial_state(theta)
    seeds = set_seeds(settings.seed, range(settings.n))
    sim = SimulationFile(out, protocol, settings) if comm.rank == 0 else None
    plan = _plan(comm, sim, out, theta, rates, initial, seeds, command)
    if plan[0] == "complete":
        if comm.rank != 0:
            return None
        return f"{out}: already complete with these settings; nothing to do\n" + summarize(out, 0, 0.0, comm.size)
    pending: list[int] = plan[1]
    chunk = int(chunk_size or default_chunk_size(settings.engine, comm.size))
    _run_rounds(comm, sim, SetEngine(protocol, settings, rates, initial, seeds), pending, chunk,
                progress_bar(protocol, settings, comm, len(pending)) if progress else None)
    if comm.rank != 0:
        return None
    assert sim is not None  # rank 0 owns the file
    sim.finalize()
    return summarize(out, len(pending), time.perf_counter() - t_start, comm.size)


def _settings(protocol: Protocol, n, samples, seed, engine, keep_raw, chunk_size) -> RunSettings:
    """The run's settings, checked (UserError on bad values)."""
    eng = resolve_engine(protocol, engine)
    if samples is not None and (not isinstance(samples, int) or samples <= 0):
        raise UserError(f"--samples must be a positive integer, got {samples!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed!r}")
    if chunk_size is not None and chunk_size <= 0:
        raise UserError(f"--chunk-size must be a positive integer, got {chunk_size!r}")
    if keep_raw and eng != "ssa":
        raise UserError(f"--keep-raw stores SSA time series; engine {eng} has none (drop --keep-raw)")
    return RunSettings(n=int(n), samples=int(samples or protocol.samples), seed=int(seed), engine=eng,
                       keep_raw=bool(keep_raw))


def _plan(comm, sim: "SimulationFile | None", out: Path, theta, rates, initial, seeds, command: str) -> tuple[str, Any]:
    """Rank 0 owns the file; it broadcasts the plan ("complete", or "run" with the pending sets), or the error,
    before anyone computes."""
    plan: tuple[str, Any] = ("", None)
    if comm.rank == 0:
        try:
            assert sim is not None  # rank 0 owns the file
            check_output_path(out)
            if sim.completed_already(theta):
                plan = ("complete", None)
            else:
                plan = ("run", sim.create_or_resume(theta, rates, initial, seeds, command).tolist())
        except UserError as exc:
            plan = ("error", str(exc))
        except Exception as exc:  # unexpected: tell the other ranks, then re-raise here
            comm.bcast(("error", f"rank 0 failed: {type(exc).__name__}: {exc}"), root=0)
            raise
    plan = comm.bcast(plan if comm.rank == 0 else None, root=0)
    if plan[0] == "error":
        raise UserError(plan[1])
    return plan


def progress_bar(protocol: Protocol, settings: RunSettings, comm, pending: int):
    """A tqdm bar on rank 0 (None elsewhere)."""
    if comm.rank != 0:
        return None
    from tqdm import tqdm  # only when a bar is shown

    return tqdm(total=settings.n, initial=settings.n - pending, unit="set", file=sys.stderr,
                desc=f"simulate {protocol.name} ({settings.engine}, {comm.size} rank{'s' if comm.size > 1 else ''})")


def _run_rounds(comm, sim, engine_obj: "SetEngine", pending: list[int], chunk: int, bar) -> None:
    """Compute the pending sets in rounds split over the ranks; rank 0 commits each round, then all ranks learn
    whether any set failed (UserError, or RuntimeError telling the user to rerun and resume)."""
    rank, size = comm.rank, comm.size
    try:
        for start in range(0, len(pending), chunk):
            round_ids = pending[start:start + chunk]
            mine: list[SetResult] | str
            try:
                mine = [engine_obj.compute(i) for i in round_ids[rank::size]]
            except UserError as exc:
                mine = f"U{exc}"
            except Exception as exc:
                mine = f"E{type(exc).__name__}: {exc}"
            gathered = comm.gather(mine, root=0)
            status = None
            if rank == 0:
                errors = [g for g in gathered if isinstance(g, str)]
                good = [r for g in gathered if not isinstance(g, str) for r in g]
                sim.commit(good)  # keep what did succeed
                if bar is not None:
                    bar.update(len(good))
                status = errors[0] if errors else None
            status = comm.bcast(status, root=0)
            if status is not None:
                if status[0] == "U":
                    raise UserError(status[1:])
                raise RuntimeError(f"simulation failed: {status[1:]} (rerun the same command to resume)")
    finally:
        if bar is not None:
            bar.close()


__all__ = ["RunSettings", "SetResult", "SimulationFile", "available_engines", "check_output_path", "closed_form",
           "grid_kind", "grid_layout", "resolve_engine", "run_simulation", "summarize"]
