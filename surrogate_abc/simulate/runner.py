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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from .. import __version__
from ..config import Protocol
from ..data.schema import FORMAT_VERSION, SIMULATION_FORMAT, attr_str, open_ours, partial_path
from ..errors import DataFileError, UserError
from ..networks import ReactionNetwork, find_closed_form
from .mpi import get_comm
from .ssa import SSASimulator, set_seeds



# ------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RunSettings:
    """What a simulation file is a function of (besides the protocol)."""

    n: int
    samples: int
    seed: int
    engine: str
    keep_raw: bool


@dataclass
class SetResult:
    """One parameter set's output, as committed to the file."""

    index: int
    grid: np.ndarray
    overflow: float
    wall_time: float
    tail_mass: float = 0.0
    truncation: tuple[int, ...] | None = None
    raw: np.ndarray | None = None


def closed_form(protocol: Protocol):
    """The closed-form law of the protocol's observed species, or None."""
    net = protocol.network
    return find_closed_form(net, protocol.species) if isinstance(net, ReactionNetwork) else None


def available_engines(protocol: Protocol) -> tuple[str, ...]:
    """Engines that can compute this protocol: for reaction networks ssa and fsp, and exact where the observed
    species has a closed-form law; for closed-form toys exact."""
    net = protocol.network
    if not isinstance(net, ReactionNetwork):
        return tuple(net.engines)
    return ("ssa", "fsp") + (("exact",) if closed_form(protocol) is not None else ())


def resolve_engine(protocol: Protocol, engine: str | None) -> str:
    """The engine to use: the network's default or a supported one; UserError otherwise."""
    net = protocol.network
    name = engine or net.default_engine
    engines = available_engines(protocol)
    if name not in engines:
        why = " (no closed-form law is known for its observed species)" if name == "exact" else ""
        raise UserError(f"{protocol.source}: engine {name!r} is not supported by the {net.name} network "
                        f"(protocol {protocol.name}){why}; use --engine {' or '.join(engines)}")
    return name


def grid_kind(protocol: Protocol, engine: str) -> str:
    """What `grid` holds: SSA counts, an exact pmf on 0..cap-1, or (closed-form toys) bin masses."""
    if engine == "exact" and not isinstance(protocol.network, ReactionNetwork):
        return "binned_pmf"
    return "counts" if engine == "ssa" else "pmf"


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


def grid_layout(protocol: Protocol, engine: str) -> tuple[tuple[int, ...], type]:
    """(per-set grid shape, dtype) of an engine's output."""
    if grid_kind(protocol, engine) == "binned_pmf":
        return (protocol.axes[0].bins,), np.float64
    caps = tuple(int(a.cap) for a in protocol.axes)
    return caps, (np.int64 if engine == "ssa" else np.float64)


# ------------------------------------------------------------------------------------------- engines
class SetEngine:
    """Computes one parameter set at a time (one instance per process; SSA compiles lazily)."""

    def __init__(self, protocol: Protocol, settings: RunSettings, rates: np.ndarray, initial: np.ndarray,
                 seeds: np.ndarray):
        self.protocol, self.settings = protocol, settings
        self.rates, self.initial, self.seeds = rates, initial, seeds
        self.caps = [a.cap for a in protocol.axes]
        self._ssa = SSASimulator(protocol.network, protocol.species) if settings.engine == "ssa" else None
        self._law = closed_form(protocol) if settings.engine == "exact" else None

    def rate_map(self, i: int) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.protocol.rate_names, self.rates[i])}

    def compute(self, i: int) -> SetResult:
        """Simulate/solve set i."""
        eng = self.settings.engine
        if eng == "ssa":
            init = {s: int(v) for s, v in zip(self.protocol.network.species, self.initial[i])}
            self._ssa.ensure_compiled(self.rate_map(i), init)  # once per process, not counted as set time
        t0 = time.perf_counter()
        if eng == "ssa":
            grid, over, raw = self._ssa.histogram(self.rate_map(i), init, self.settings.samples,
                                                  self.protocol.ssa.burn_in_intervals, int(self.seeds[i]),
                                                  self.caps, keep_raw=self.settings.keep_raw)
            return SetResult(i, grid, float(over), time.perf_counter() - t0, raw=raw)
        if eng == "fsp":
            from .fsp import solve_stationary  # written separately; imported only when used

            r = solve_stationary(self.protocol.network, self.rate_map(i), self.protocol.species, self.caps,
                                 self.protocol.fsp)
            return SetResult(i, np.asarray(r.pmf, dtype=np.float64), float(r.overflow), time.perf_counter() - t0,
                             tail_mass=float(r.tail_mass), truncation=tuple(int(t) for t in r.truncation))
        if self._law is not None:
            pmf = self._law.pmf(self.rate_map(i), int(self.caps[0]))
            return SetResult(i, pmf, float(max(1.0 - pmf.sum(), 0.0)), time.perf_counter() - t0)
        probs, outside = self.protocol.network.bin_probabilities(self.rates[i:i + 1], self.protocol.axes[0].edges)
        return SetResult(i, probs[0], float(outside[0]), time.perf_counter() - t0)


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
    rank, size = comm.rank, comm.size
    out = Path(out)
    # Deterministic checks and draws: identical on every rank, so errors are raised everywhere alike.
    eng = resolve_engine(protocol, engine)
    if samples is not None and (not isinstance(samples, int) or samples <= 0):
        raise UserError(f"--samples must be a positive integer, got {samples!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed!r}")
    if chunk_size is not None and chunk_size <= 0:
        raise UserError(f"--chunk-size must be a positive integer, got {chunk_size!r}")
    if keep_raw and eng != "ssa":
        raise UserError(f"--keep-raw stores SSA time series; engine {eng} has none (drop --keep-raw)")
    settings = RunSettings(n=int(n), samples=int(samples or protocol.samples), seed=int(seed), engine=eng,
                           keep_raw=bool(keep_raw))
    theta = protocol.sample(settings.n, settings.seed)  # ConfigError for n <= 0
    rates = protocol.rates(theta)
    initial = protocol.initial_state(theta)
    seeds = set_seeds(settings.seed, range(settings.n))

    # Rank 0 owns the file; it broadcasts the plan (or the error) before anyone computes.
    sim = SimulationFile(out, protocol, settings) if rank == 0 else None
    plan: tuple[str, Any]
    if rank == 0:
        try:
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
    plan = comm.bcast(plan if rank == 0 else None, root=0)
    if plan[0] == "error":
        raise UserError(plan[1])
    if plan[0] == "complete":
        if rank != 0:
            return None
        return f"{out}: already complete with these settings; nothing to do\n" + summarize(out, 0, 0.0, size)

    pending: list[int] = plan[1]
    chunk = int(chunk_size or default_chunk_size(eng, size))
    engine_obj = SetEngine(protocol, settings, rates, initial, seeds)
    bar = None
    if rank == 0 and progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.n, initial=settings.n - len(pending), unit="set", file=sys.stderr,
                   desc=f"simulate {protocol.name} ({eng}, {size} rank{'s' if size > 1 else ''})")
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
    if rank != 0:
        return None
    sim.finalize()
    return summarize(out, len(pending), time.perf_counter() - t_start, size)


__all__ = ["RunSettings", "SetResult", "SimulationFile", "check_output_path", "resolve_engine", "run_simulation",
           "summarize"]
