"""Blocks of genes on dask.distributed workers: `surrogate-abc infer TABLE --scheduler tcp://HOST:PORT | local:N`.

The client (the machine running the command) reads the table, computes the shared prior sets and their log pmf,
and stores every block as it arrives (store.py), exactly as the single-machine run does; only `run_block` runs
on the workers, one task per block. What every block needs (the prepared histograms, the shared sets and their
log pmf, the settings) is scattered once to every worker (`client.scatter(..., broadcast=True)`). The emulator
does not travel as a pickle: each worker process resolves it once from a small description (`ModelSpec`: the
--emulator spec with absolute paths, capture, capture prior, SHA-256) and checks it against the client's (same
SHA-256, same log pmf at a few shared sets), so the workers need the emulator file on a shared filesystem,
or the same installed package for the shipped emulators and protocols.

Results equal the single-machine run's for the same seed: a block's random numbers depend only on the seed and
its index, whichever worker runs it. A worker that dies mid-run loses its blocks; dask runs them again elsewhere
(and, should the scattered inputs be lost with every worker, they are scattered again and the blocks
resubmitted), so genes.csv is the same. A stopped client keeps the blocks it stored: the same command resumes.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Sequence, cast

import numpy as np

from ...emulators.base import EmulatorLike
from ...errors import UserError
from ..workers import torch_threads

if TYPE_CHECKING:
    from .refine import BatchSettings
    from .run import Prepared, TableRun

BlockResult = tuple[dict[str, np.ndarray], list[dict[str, Any]]]
FORMS = "tcp://HOST:PORT (a running dask scheduler) or local:N (N worker processes on this machine)"
RESUBMITS = 3          # times a block whose inputs were lost is submitted again at most
FINGERPRINT_SETS = 4   # shared sets at which a worker's emulator is compared with the client's
_TCP = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})$")
_LOCAL = re.compile(r"^local:(?P<n>\d+)$")


@dataclasses.dataclass(frozen=True)
class Scheduler:
    """A parsed --scheduler: the address of a running scheduler, or the number of local worker processes."""

    text: str
    address: str | None = None
    local_workers: int = 0


def parse_scheduler(text: str) -> Scheduler:
    """--scheduler tcp://HOST:PORT or local:N (UserError otherwise, naming the forms)."""
    t = text.strip()
    m = _LOCAL.match(t)
    if m:
        n = int(m["n"])
        if n < 1:
            raise UserError(f"--scheduler {text}: local:N needs N >= 1 worker processes, e.g. local:4")
        return Scheduler(t, local_workers=n)
    m = _TCP.match(t)
    if m:
        if not 0 < int(m["port"]) < 65536:
            raise UserError(f"--scheduler {text}: port {m['port']} is not a TCP port (1-65535); give {FORMS}")
        return Scheduler(t, address=t)
    raise UserError(f"--scheduler {text}: give {FORMS}")


def check_scheduler(text: str) -> Scheduler:
    """Parse --scheduler and, for an address, connect once (UserError when it cannot be reached within dask's
    connect timeout, `distributed.comm.timeouts.connect`): called before anything is read or written."""
    sched = parse_scheduler(text)
    if sched.address is not None:
        client = _client(sched)
        client.close()
    return sched


def _client(sched: Scheduler) -> Any:
    """A distributed.Client of a running scheduler (UserError naming the address when unreachable)."""
    Client = _distributed().Client
    try:
        return Client(sched.address, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"--scheduler {sched.text}: cannot reach a dask scheduler there ({why}); start one "
                        "(`dask scheduler`, or a dask-jobqueue cluster) and pass its address, or use local:N") from None


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - pyabc depends on it
        raise UserError(f"--scheduler needs dask.distributed ({exc}); pip install distributed") from None
    return distributed


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How a worker resolves the run's emulator itself: prepare()'s resolve_models call, with absolute paths."""

    emulator: str | None
    capture: float | tuple[float, float] | None
    capture_prior: tuple[float, float] | None
    sha256: str
    species: tuple[str, ...] = ("mrna",)

    @classmethod
    def of(cls, run: TableRun, sha256: str) -> ModelSpec:
        return cls(_absolute(run.emulator), run.capture, run.capture_prior, sha256)

    def load(self) -> EmulatorLike:
        from ...emulators.resolve import resolve_models

        (emulator, sha), = resolve_models([self.emulator], self.species, self.capture, self.capture_prior)
        if sha != self.sha256:
            raise WorkerMismatch(f"emulator {self.emulator or 'default'} has SHA-256 {sha[:12]} on this worker, "
                                 f"{self.sha256[:12]} on the client")
        return emulator


def _absolute(spec: str | None) -> str | None:
    """The --emulator spec with a file path made absolute (workers may run in another folder)."""
    if spec is None:
        return None
    prefix, rest = ("exact:", spec[6:]) if spec.startswith("exact:") else ("", spec)
    path = Path(rest).expanduser()
    return prefix + str(path.resolve()) if path.is_file() else spec


class WorkerMismatch(RuntimeError):
    """A worker's emulator or package differs from the client's (raised on the worker, a UserError on the client)."""


@dataclasses.dataclass(frozen=True)
class Payload:
    """What every block needs, scattered once to each worker: the prepared run without its emulator, the model's
    description, the shared sets and their log pmf (computed once, on the client), the settings and the seed; and
    what a worker checks its own emulator against: the client's log pmf at the first FINGERPRINT_SETS shared sets,
    and the package version."""

    prep: Prepared
    model: ModelSpec
    shared_z: np.ndarray
    shared_log_pmf: np.ndarray
    settings: BatchSettings
    seed: int
    fingerprint: np.ndarray
    version: str
    torch_threads: int | None = None


_LOCK = threading.Lock()
_LOADED: dict[ModelSpec, EmulatorLike] = {}  # per worker process: the emulator of the latest run
_MALLOC_SET = False
MMAP_THRESHOLD = 32 << 20  # glibc's dynamic mmap threshold at its largest (64-bit), and twice it to trim
TRIM_THRESHOLD = 64 << 20


def _malloc_thresholds() -> None:
    """glibc's malloc thresholds as an ordinary process reaches them, once per worker process. dask's nanny starts
    workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes the mmap threshold at 128 KiB: every large numpy
    temporary of a block is then mapped and unmapped anew (page faults), which made a block 2.2x slower than in
    the client (3 blocks of 25 genes: 10.4 s of CPU against 4.4 s). A worker keeps up to 64 MiB freed instead."""
    global _MALLOC_SET
    if _MALLOC_SET or not sys.platform.startswith("linux"):
        return
    _MALLOC_SET = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl): its allocator has no such thresholds
        pass


def _worker_emulator(payload: Payload) -> EmulatorLike:
    """The run's emulator in this worker process, resolved and checked once (then kept for the run's blocks)."""
    with _LOCK:
        _malloc_thresholds()
        em = _LOADED.get(payload.model)
        if em is None:
            from ... import __version__
            from .likelihood import full_log_pmf

            if payload.version != __version__:
                raise WorkerMismatch(f"surrogate_abc {__version__} on this worker, {payload.version} on the client")
            try:
                em = payload.model.load()
            except UserError as exc:  # e.g. the emulator file is not where the client has it
                raise WorkerMismatch(f"cannot load the emulator there ({exc})") from None
            mine = full_log_pmf(em, payload.prep.space.natural(payload.shared_z[:len(payload.fingerprint)]))
            if mine.shape != payload.fingerprint.shape or not np.allclose(mine, payload.fingerprint, rtol=1e-6,
                                                                           atol=1e-9):
                raise WorkerMismatch(f"emulator {em.source} gives other probabilities on this worker than on the "
                                     "client")
            _LOADED.clear()
            _LOADED[payload.model] = em
        return em


def block_on_worker(payload: Payload, index: int, genes: np.ndarray) -> BlockResult:
    """One block of genes on a dask worker: run.run_block with the worker's own copy of the emulator, torch using
    as many threads as on the client (see `torch_threads`)."""
    from .run import run_block

    with torch_threads(payload.torch_threads):
        prep = dataclasses.replace(payload.prep, emulator=_worker_emulator(payload))
        return run_block(prep, index, genes, payload.shared_z, payload.shared_log_pmf, payload.settings,
                         payload.seed)


def dask_blocks(scheduler: str, run: TableRun, prep: Prepared, blocks: Sequence[np.ndarray], todo: Sequence[int],
                shared_z: np.ndarray, shared_log_pmf: np.ndarray, settings: BatchSettings,
                log: Callable[[str], None]) -> Generator[tuple[int, BlockResult], None, None]:
    """(block index, run_block's result) for every block of `todo`, in the order they finish on the workers of
    `scheduler`. A local cluster is started here and closed when the generator ends or is closed."""
    from ... import __version__
    from .likelihood import full_log_pmf

    dist = _distributed()
    sched = parse_scheduler(scheduler)
    if not todo:
        return
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    cluster, environ = None, dict(os.environ)
    if sched.address is None:
        import logging

        n = sched.local_workers
        shared = n > 1 and (threads or 1) > 1  # the workers' torch threads share the cores: let idle ones sleep
        cluster = dist.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                    silence_logs=logging.ERROR, env={"OMP_WAIT_POLICY": "PASSIVE"} if shared else {})
        _restore_environ(environ)  # the nanny puts its workers' variables (OMP_NUM_THREADS=1, ...) in ours too
        client = dist.Client(cluster, set_as_default=False)
        log(f"dask: a local cluster of {n} worker process(es), one block at a time each"
            + (f", torch with {threads} threads each (the client's, for identical results; OMP_NUM_THREADS=1 "
               "for throughput)" if shared else ""))
    else:
        client = _client(sched)
    try:
        if sched.address is not None:
            n = len(client.scheduler_info().get("workers", {}))
            log(f"dask: scheduler {sched.address}, {n} worker(s)" + ("; waiting for the first" if not n else ""))
            client.wait_for_workers(1)
        fingerprint = full_log_pmf(prep.emulator, prep.space.natural(shared_z[:FINGERPRINT_SETS]))
        payload = Payload(dataclasses.replace(prep, emulator=cast(Any, None)), ModelSpec.of(run, prep.sha256),
                          shared_z, shared_log_pmf, settings, run.seed, fingerprint, __version__, threads)
        yield from _gather(client, dist, payload, blocks, todo)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
            _restore_environ(environ)


def _restore_environ(environ: dict[str, str]) -> None:
    """os.environ as it was: a local cluster's nanny sets its workers' variables (distributed.nanny.pre-spawn-environ:
    OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) in the client's process too, where torch or a later subprocess
    would read them."""
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _gather(client: Any, dist: Any, payload: Payload, blocks: Sequence[np.ndarray],
            todo: Sequence[int]) -> Generator[tuple[int, BlockResult], None, None]:
    """Submit every block, yield each result as it arrives; a block whose inputs were lost (every worker holding
    the scattered payload died) is submitted again with the payload scattered anew, RESUBMITS times at most."""
    tag = uuid.uuid4().hex[:8]
    data = client.scatter(payload, broadcast=True, hash=False)
    tries = {b: 0 for b in todo}

    def submit(b: int) -> Any:
        return client.submit(block_on_worker, data, b, blocks[b], pure=False,
                             key=f"surrogate-abc-block-{b}-{tag}-{tries[b]}")

    running = {submit(b): b for b in todo}
    done = dist.as_completed(list(running), loop=client.loop)
    try:
        for fut in done:
            b = running.pop(fut)
            if fut.status == "finished":
                result = fut.result()
                fut.release()
                yield b, result
                continue
            if fut.status == "error":
                exc = fut.exception()
                if isinstance(exc, WorkerMismatch):
                    raise UserError(f"--scheduler: a worker cannot run this model: {exc}; the workers need the "
                                    "same surrogate_abc installation and the emulator file on a shared filesystem")
                if isinstance(exc, dist.KilledWorker):
                    raise UserError(f"--scheduler: every worker that ran block {b + 1} ({len(blocks[b])} genes) died "
                                    f"({exc.allowed_failures + 1} of them, out of memory?); give the workers more "
                                    "memory or use a smaller --block-size, then rerun to resume")
                fut.result()  # the block's own error, raised here with its traceback
            tries[b] += 1  # cancelled: its inputs were lost with the workers holding them
            if tries[b] > RESUBMITS:
                raise UserError(f"--scheduler: block {b + 1} lost its inputs {RESUBMITS} times (workers keep "
                                "leaving); rerun the same command to resume")
            if data.status != "finished":
                data = client.scatter(payload, broadcast=True, hash=False)
            new = submit(b)
            running[new] = b
            done.add(new)
    finally:
        if running:
            client.cancel(list(running))
