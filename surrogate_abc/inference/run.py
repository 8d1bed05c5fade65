"""Run ABC-SMC chains against an emulator and collect their final populations and per-generation statistics."""
from __future__ import annotations

import os
import random
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, cast

import numpy as np

if TYPE_CHECKING:
    from pyabc import Distribution
    from pyabc.sampler import Sampler

from ..emulators.base import EmulatorLike
from ..errors import UserError
from ..report import warn
from .priors import check_prior_in_domain, prior_box, pyabc_prior
from .pyabc_bridge import load_compat
from .pyabc_bridge.history import ChainResult, chain_result, model_probabilities
from .pyabc_bridge.parts import (
    EmulatorModel,
    HistogramDistance,
    MultinomialKernel,
    observed_categories,
    observed_sumstat,
)
from .settings import InferenceSettings
from .workers import torch_threads


def model_boxes(emulators: Sequence[EmulatorLike], overrides: Mapping[str, tuple[float, float]]) -> list[dict]:
    """The prior box of each model; an --prior override applies to every model with that parameter (UserError
    when none has it)."""
    unknown = [k for k in overrides if not any(k in em.param_names for em in emulators)]
    if unknown:
        names = sorted({n for em in emulators for n in em.param_names})
        raise UserError(f"--prior {unknown[0]}: unknown parameter; the emulator's parameters are {', '.join(names)}")
    boxes = []
    for em in emulators:
        box = prior_box(em.protocol, {k: v for k, v in overrides.items() if k in em.param_names})
        check_prior_in_domain(box, np.asarray(em.domain), tuple(em.param_names), em.source)
        boxes.append(box)
    return boxes


@dataclass(frozen=True)
class ChainSetup:
    """What every chain of one inference shares (built once, inherited by forked chain processes)."""

    emulators: tuple[EmulatorLike, ...]
    boxes: tuple[dict, ...]
    priors: tuple[Distribution, ...]
    n_cells: int
    categories: np.ndarray | None
    x_0: dict
    settings: InferenceSettings
    db: str
    compat: bool = True  # pyabc's internals passed pyabc_bridge.compat's check: the fast path can run

    def models(self) -> list[EmulatorModel]:
        return [EmulatorModel(em, self.settings.algorithm.mode, self.n_cells, box, name=em.protocol.name,
                              categories=self.categories) for em, box in zip(self.emulators, self.boxes)]


def run_one_chain(setup: ChainSetup, c: int, log: Callable[[str], None] = print,
                  sampler_factory: Callable[[], Sampler] | None = None) -> tuple[int, np.ndarray]:
    """Chain c (seed SEED + c) as one History run of setup.db; returns (run id, model probabilities)."""
    with caller_random_state_kept():  # pyabc draws from numpy's and Python's global generators: seed them for the
        return _run_one_chain(setup, c, log, sampler_factory)  # chain, then give the caller's states back


@contextmanager
def caller_random_state_kept() -> Iterator[None]:
    """Restore numpy's and Python's global random states on exit: what pyabc needs seeded globally inside a chain
    leaves a caller's own random streams as they were (sa.infer() in a notebook changes no one's numbers)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _run_one_chain(setup: ChainSetup, c: int, log: Callable[[str], None],
                   sampler_factory: Callable[[], Sampler] | None) -> tuple[int, np.ndarray]:
    import pyabc

    from .pyabc_bridge.progress import GenerationProgress, pyabc_log_to
    from .pyabc_bridge.samplers import make_sampler

    compat = load_compat()[0] if setup.compat else None
    alg, exe = setup.settings.algorithm, setup.settings.execution
    seed = alg.seed + c
    np.random.seed(seed % 2**32)
    random.seed(seed)
    models = setup.models()
    walltime = timedelta(seconds=alg.max_walltime) if alg.max_walltime else None
    progress = GenerationProgress(c, alg.chains, alg.mode, log, compat=compat)
    with pyabc_log_to(progress):
        sampler = sampler_factory() if sampler_factory else make_sampler(
            exe.sampler, exe.n_procs, exe.scheduler_address, exe.redis_host, exe.redis_port,
            batched=compat is not None, batched_weights=alg.fast)
        one = models if len(models) > 1 else models[0]
        pri = list(setup.priors) if len(setup.priors) > 1 else setup.priors[0]
        smc = compat.BatchedABCSMC if compat is not None and alg.fast else pyabc.ABCSMC
        if alg.mode == "likelihood":
            abc = smc(one, pri, MultinomialKernel(), population_size=alg.population,
                      sampler=sampler, eps=pyabc.Temperature(), acceptor=pyabc.StochasticAcceptor())
        else:
            abc = smc(one, pri, HistogramDistance(alg.distance),
                      population_size=alg.population, sampler=sampler, eps=pyabc.MedianEpsilon())
        abc.new(setup.db, setup.x_0, meta_info={"chain": c, "seed": seed, "mode": alg.mode,
                                                "emulator": ";".join(em.source for em in setup.emulators)})
        abc.history.stores_sum_stats = False
        try:
            history = abc.run(minimum_epsilon=alg.min_epsilon, max_nr_populations=alg.generations,
                              max_walltime=walltime, min_acceptance_rate=alg.min_acceptance_rate)
        finally:
            client = getattr(sampler, "client", None)  # the dask sampler's connection to the scheduler
            if exe.sampler == "dask" and client is not None and sampler_factory is None:
                client.close()
    return int(history.id), model_probabilities(history, len(models))


def _chain_child(conn: Any, setup: ChainSetup, c: int, parent: int) -> None:
    """Body of a forked chain process of the process `parent`: run the chain, sending its progress lines ("log",
    text) and at the end ("ok", result, warning texts) or ("error", exception, []) to the parent."""
    from .workers import die_with_parent, one_core, with_notes

    die_with_parent(parent)
    try:
        if "torch" in sys.modules:  # one core per chain: the chains are the parallelism
            one_core()
        out, notes = with_notes(run_one_chain, setup, c, lambda line: conn.send(("log", line, [])))
        conn.send(("ok", out, notes))
    except BaseException as exc:  # the parent re-raises it
        conn.send(("error", exc if isinstance(exc, UserError) else RuntimeError(f"{type(exc).__name__}: {exc}"), []))
    finally:
        conn.close()


def chain_jobs(settings: InferenceSettings, sampler_factory: Callable[[], Sampler] | None) -> int:
    """Chains run at once: one process per chain and core for the single-process sampler on Linux (fork keeps
    the loaded emulator), else 1 (the other samplers bring their own parallelism)."""
    import multiprocessing as mp
    import os

    alg, exe = settings.algorithm, settings.execution
    if (alg.chains < 2 or sampler_factory is not None or exe.sampler != "single"
            or "fork" not in mp.get_all_start_methods()):
        return 1
    return max(1, min(exe.chain_jobs or os.cpu_count() or 1, alg.chains))


def run_chains_in_processes(setup: ChainSetup, jobs: int, log: Callable[[str], None]) -> list[tuple[int, np.ndarray]]:
    """All chains, `jobs` forked processes at a time; their progress lines go to `log` as they come, results in
    chain order, and the workers' warnings are re-raised here."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    import pyabc

    pyabc.History(setup.db)  # the database and its schema version, made once before the chains write to it
    ctx = mp.get_context("fork")
    results: dict[int, tuple[int, np.ndarray]] = {}
    pending = list(range(setup.settings.algorithm.chains))
    running: dict[Any, tuple[int, Any]] = {}  # receiving end -> (chain, process)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                c = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_chain_child, args=(send, setup, c, os.getpid()), daemon=True)
                proc.start()
                send.close()
                running[recv] = (c, proc)
            for ready in wait(list(running)):
                recv = cast(Any, ready)
                c, proc = running[recv]
                try:
                    status, out, notes = recv.recv()
                except EOFError:
                    raise RuntimeError(f"chain {c + 1}: its process ended without a result (exit code "
                                       f"{proc.join() or proc.exitcode})") from None
                if status == "log":
                    log(out)
                    continue
                del running[recv]
                proc.join()
                for n in notes:
                    warn(n, stacklevel=2)
                if status != "ok":
                    raise out
                results[c] = out
    finally:
        for _, proc in running.values():
            proc.terminate()
    return [results[c] for c in sorted(results)]


def run_chains(emulators: Sequence[EmulatorLike], hist: np.ndarray, overflow: int, settings: InferenceSettings,
               db_path: Path, log: Callable[[str], None] = print,
               sampler_factory: Callable[[], Sampler] | None = None) -> list[ChainResult]:
    """Run settings.algorithm.chains independent ABC-SMC runs (seeds SEED, SEED + 1, ...) into one pyabc database.

    `emulators`: the model, or several (model selection: pyabc's ABC-SMC over the models, with a uniform
    model prior; every model must share the bins). Each chain is a separate History run in db_path, run by
    pyabc's ABCSMC.run, in parallel processes where `chain_jobs` allows (the results do not depend on it);
    progress is reported through `log` once per generation (GenerationProgress). With several models each
    ChainResult holds the particles of the model most probable over all chains, and every model's posterior
    probability."""
    import pyabc

    settings.check()
    compat, note = load_compat()
    if note:
        warn(note, stacklevel=2)
    if not isinstance(emulators, (list, tuple)) or not emulators:
        raise TypeError("run_chains: emulators is a non-empty list of emulators ([emulator] for one model)")
    models_in = list(emulators)
    check_same_bins(models_in)
    mode = settings.algorithm.mode
    boxes = model_boxes(models_in, settings.algorithm.prior)
    n_cells = int(np.asarray(hist).sum() + overflow)
    cats = observed_categories(hist, overflow) if mode == "likelihood" else None
    setup = ChainSetup(tuple(models_in), tuple(boxes), tuple(pyabc_prior(b) for b in boxes), n_cells, cats,
                       observed_sumstat(mode, hist, overflow, cats), settings,
                       f"sqlite:///{Path(db_path).resolve()}", compat=compat is not None)
    jobs = chain_jobs(settings, sampler_factory)
    if jobs > 1:
        runs = run_chains_in_processes(setup, jobs, log)
    else:  # the single sampler in this process: one torch thread, as in a forked chain (same numbers, and faster)
        one = settings.execution.sampler == "single" and sampler_factory is None and "torch" in sys.modules
        with torch_threads(1 if one else None):
            runs = [run_one_chain(setup, c, log, sampler_factory) for c in range(settings.algorithm.chains)]
    probs = np.array([p for _, p in runs])  # (chains, M)
    best = int(np.argmax(probs.mean(axis=0)))
    results = []
    for c, (run_id, _) in enumerate(runs):
        if probs[c, best] <= 0:
            warn(f"chain {c + 1}: model {models_in[best].protocol.name} has no particles left in its last "
                 "population; the chain is left out of the posterior", stacklevel=2)
            continue
        history = pyabc.History(setup.db, _id=run_id)
        results.append(chain_result(history, c, mode, setup.models()[best], m=best, model_probabilities=probs[c],
                                    compat=compat))
    if not results:
        raise UserError(f"no chain finished its first generation (acceptance below --min-acceptance-rate "
                        f"{settings.algorithm.min_acceptance_rate:g}, or --max-walltime reached); "
                        "lower --min-acceptance-rate")
    return results


def check_same_bins(emulators: Sequence[EmulatorLike]) -> None:
    """UserError unless all models share species and bin edges (their likelihoods must be of the same data)."""
    first = emulators[0]
    for em in emulators[1:]:
        same = tuple(em.species) == tuple(first.species) and len(em.edges) == len(first.edges) and all(
            len(a) == len(b) and np.allclose(a, b) for a, b in zip(em.edges, first.edges))
        if not same:
            raise UserError(f"--compare: models {first.protocol.name} and {em.protocol.name} bin the data differently "
                            "(species or histogram edges differ); compared models need the same [histogram] edges")


