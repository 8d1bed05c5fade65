"""What a finished chain leaves: its final weighted population and per-generation statistics, read from the
pyabc History it wrote."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UserError
from ...report import warn

if TYPE_CHECKING:
    from pyabc import History

    from .parts import EmulatorModel


@dataclass
class ChainResult:
    """One ABC-SMC run: final weighted population and per-generation statistics."""

    chain: int
    run_id: int
    params: np.ndarray  # (N, d) in emulator.param_names order
    weights: np.ndarray  # (N,) normalised
    epsilon: np.ndarray  # (G,) epsilon or temperature per generation
    acceptance_rate: np.ndarray  # (G,)
    ess: np.ndarray  # (G,)
    n_simulations: np.ndarray  # (G,)
    wall_time: np.ndarray  # (G,) seconds since the chain started
    final_temperature_ok: bool = True
    model: int = 0  # index of the model whose particles these are (model selection)
    model_probabilities: np.ndarray = field(default_factory=lambda: np.ones(1))  # (M,) of the last population


def generation_stats(history: History, t_from: int = 0, compat: ModuleType | None = None) -> dict[str, np.ndarray]:
    """Per-generation statistics of a pyabc History from generation t_from on: t, epsilon (or temperature),
    acceptance_rate, ess (pyabc's effective_sample_size of the weights, over all models' particles),
    n_simulations, wall_time (seconds from the run's start in the database to the generation's end).
    With `compat` (pyabc_bridge.compat) the weights of all generations come from one query, else from
    History.get_weighted_distances per generation."""
    from pyabc.weighted_statistics import effective_sample_size

    pops = history.get_all_populations()
    pops = pops[pops["t"] >= max(t_from, 0)].sort_values("t")
    if compat is not None:
        rows = compat.generation_weights(history, t_from)
        weights = [rows[rows[:, 0] == t, 1] for t in pops["t"]]
    else:
        weights = [history.get_weighted_distances(int(t))["w"].to_numpy(float) for t in pops["t"]]
    start = history.get_abc().start_time
    n_sim = pops["samples"].to_numpy(float)
    return {
        "t": pops["t"].to_numpy(int),
        "epsilon": pops["epsilon"].to_numpy(float),
        "acceptance_rate": np.array([len(w) for w in weights], float) / np.maximum(n_sim, 1),
        "ess": np.array([effective_sample_size(w) for w in weights], float),
        "n_simulations": n_sim,
        "wall_time": np.array([(e - start).total_seconds() for e in pops["population_end_time"]], float),
    }


def model_probabilities(history: History, n_models: int) -> np.ndarray:
    """(n_models,) posterior model probabilities of a run's last population (0 for models that died out)."""
    out = np.zeros(n_models)
    if history.max_t < 0:
        return out
    df = history.get_model_probabilities(history.max_t)  # indexed by model id m, column p
    for m, p in zip(df.index, df["p"].to_numpy(float)):
        out[int(m)] = p
    return out / out.sum() if out.sum() > 0 else out


def chain_result(history: History, chain: int, mode: str, model: EmulatorModel, m: int = 0,
                 model_probabilities: np.ndarray | None = None, compat: ModuleType | None = None) -> ChainResult:
    """The ChainResult of a finished run: model m's last population (natural scale) and generation_stats."""
    stats = generation_stats(history, compat=compat)
    if not len(stats["t"]):
        raise UserError("ABC-SMC produced no population (the sampler failed); try --sampler single")
    df, w = history.get_distribution(m=m, t=history.max_t)
    ok = mode != "likelihood" or stats["epsilon"][-1] <= 1.0 + 1e-12
    if not ok:
        warn(f"chain {chain + 1}: stopped at temperature {stats['epsilon'][-1]:.4g} > 1, so its population is a "
             "tempered posterior; allow more --generations, a longer --max-walltime or a lower --min-acceptance-rate", stacklevel=3)
    return ChainResult(chain=chain, run_id=int(history.id), params=model.natural(df),
                       weights=np.asarray(w, float) / np.sum(w), epsilon=stats["epsilon"],
                       acceptance_rate=stats["acceptance_rate"], ess=stats["ess"],
                       n_simulations=stats["n_simulations"], wall_time=stats["wall_time"], final_temperature_ok=ok,
                       model=m, model_probabilities=(np.ones(1) if model_probabilities is None
                                                     else np.asarray(model_probabilities, float)))
