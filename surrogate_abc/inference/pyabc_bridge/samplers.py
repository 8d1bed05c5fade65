"""The pyabc sampler for --sampler: the batched samplers of the fast path (batched_samplers.py) when pyabc's
internals passed compat's check, else pyabc's own."""
from __future__ import annotations

import os
from typing import Any

import pyabc

from ...errors import UserError

SAMPLERS = ("single", "multicore", "dask", "redis")
# Proposals per request of a dask task or a redis worker: each round trip carries this many particles, so the
# scheduler's and the database's per-message cost is shared (pyabc's batch_size; the law is unchanged).
CLUSTER_BATCH = 16


def make_sampler(kind: str, n_procs: int | None = None, scheduler_address: str | None = None,
                 redis_host: str = "localhost", redis_port: int = 6379, batched: bool = True,
                 batched_weights: bool = True) -> pyabc.sampler.Sampler:
    """The pyabc sampler for --sampler.

    * single: `BatchedSampler` (one process; the emulator is evaluated on batches of proposals; with
      batched_weights False pyabc's own weight function, one particle at a time).
    * multicore: pyabc.sampler.MulticoreEvalParallelSampler(n_procs) (default n_procs = cores);
      one emulator call per particle in each worker.
    * dask: pyabc.sampler.DaskDistributedSampler on a dask.distributed Client connected to
      --scheduler-address. Start a scheduler with `dask scheduler` and workers with
      `dask worker ADDRESS` (ADDRESS e.g. tcp://host:8786) on each machine.
    * redis: pyabc.sampler.RedisEvalParallelSampler(host, port). Start a server with
      `redis-server --port PORT` and workers with `abc-redis-worker --host=HOST --port=PORT`.
    Workers of dask/redis receive the model by pyabc's own (cloud)pickle transport and take CLUSTER_BATCH
    proposals per request, evaluated in one emulator call (BatchedSimulateOne).
    `batched` False (pyabc's internals differ from those checked): pyabc's own samplers throughout.
    """
    if kind not in SAMPLERS:
        raise UserError(f"--sampler {kind!r}: use single, multicore, dask or redis")
    fast: Any = None
    if batched:
        from . import batched_samplers as fast
    if kind == "single":
        return fast.BatchedSampler(batched_weights=batched_weights) if batched else pyabc.sampler.SingleCoreSampler()
    if kind == "multicore":
        return pyabc.sampler.MulticoreEvalParallelSampler(n_procs=n_procs or os.cpu_count() or 1, check_max_eval=True)
    if kind == "dask":
        if not scheduler_address:
            raise UserError("--sampler dask needs --scheduler-address (e.g. tcp://host:8786 of a running `dask scheduler`)")
        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("--sampler dask needs the 'distributed' package: pip install 'dask[distributed]'") from None
        dask_cls = fast.BatchedDaskSampler if batched else pyabc.sampler.DaskDistributedSampler
        return dask_cls(dask_client=Client(scheduler_address), batch_size=CLUSTER_BATCH)
    redis_cls = fast.BatchedRedisSampler if batched else pyabc.sampler.RedisEvalParallelSampler
    try:
        return redis_cls(host=redis_host, port=redis_port, batch_size=CLUSTER_BATCH)
    except Exception as exc:  # missing redis package or server
        raise UserError(f"--sampler redis: cannot use redis at {redis_host}:{redis_port} ({exc}); "
                        "install 'redis' and start `redis-server`") from None

