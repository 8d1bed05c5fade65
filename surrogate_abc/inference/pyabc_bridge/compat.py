"""Every use of pyabc beyond its public API, in this one module: what the fast path of `infer` overrides, calls
or reads that pyabc does not document. Nothing else in surrogate_abc imports a private pyabc name.

What it relies on (checked by `check()` before a run, and by tests/test_pyabc_bridge.py against pyabc's own path):
* `ABCSMC._create_transition_pdf`, `_prepare_next_iteration` and `run_generation`, overridden by
  `BatchedABCSMC` so that the densities of a whole sample are computed in one batch;
* `History._make_session`, `_close_session` and `_save_to_population_db` (with pyabc's `with_session`),
  overridden by `BulkHistory` to write a population with one insert per table, and pyabc's database schema
  (`pyabc.storage.db_model`), which `generation_weights` also reads with one SQL query;
* `_simulate_one` and `_simulate_one_from_prior` (the functions pyabc's simulate partial wraps, whose keywords
  the batched samplers read), `pyabc.inference.smc.identity`, `Sampler._create_empty_sample`;
* `StochasticAcceptor.pdf_norms`;
* the text of pyabc's INFO lines per generation ("t: T, eps: E.", "Accepted: A / N = R, ESS: S."), which the
  progress lines read (`generation_record`); another text only silences the progress lines.

When `check()` finds one of them missing or reshaped (another pyabc release), `infer` runs pyabc's own
ABCSMC, History and samplers instead, with a one-line note (`pyabc_bridge.load_compat`).
"""
from __future__ import annotations

import inspect
import logging
import re
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyabc
from pyabc.inference.smc import identity
from pyabc.inference_util.inference_util import _simulate_one, _simulate_one_from_prior
from pyabc.population import Particle, Sample
from pyabc.storage.history import with_session

from .densities import PriorDensity, TransitionDensity, _CachedDensity, gc_paused

# the pyabc releases this module was checked with (a test runs the fast and pyabc's own path side by side)
CHECKED_VERSIONS = ("0.13.0",)

# parameters of the private methods overridden here, as pyabc 0.13 defines them
OVERRIDDEN = {
    (pyabc.ABCSMC, "_create_transition_pdf"): ["self", "t", "transitions"],
    (pyabc.ABCSMC, "_prepare_next_iteration"): ["self", "t", "sample", "population", "acceptance_rate"],
    (pyabc.ABCSMC, "run_generation"): ["self", "t"],
    (pyabc.History, "_save_to_population_db"): ["self", "t", "current_epsilon", "nr_simulations", "particles_by_model",
                                                "model_probabilities", "model_names", "wall_time"],
    (pyabc.History, "_make_session"): ["self"],
    (pyabc.History, "_close_session"): ["self"],
    (pyabc.sampler.Sampler, "_create_empty_sample"): ["self"],
}
# keywords of pyabc's simulate partials that the batched samplers read
SIMULATE_KEYWORDS = {
    "proposal": ("t", "m", "p", "model_prior", "parameter_priors", "model_perturbation_kernel", "transitions", "models",
                 "summary_statistics", "x_0", "distance_function", "eps", "acceptor", "weight_function", "evaluate",
                 "proposal_id"),
    "prior": ("model_prior", "parameter_priors", "models", "summary_statistics"),
}
# pyabc's database tables and the columns read or written here
SCHEMA = {
    "abc_smc": ("id", "start_time"), "populations": ("id", "abc_smc_id", "t", "nr_samples", "epsilon", "wall_time"),
    "models": ("id", "population_id", "m", "name", "p_model"), "particles": ("id", "model_id", "w", "proposal_id"),
    "parameters": ("particle_id", "name", "value"), "samples": ("particle_id", "distance"),
}


def _parameters(func: Callable) -> list[str]:
    return list(inspect.signature(inspect.unwrap(func)).parameters)


def check() -> str | None:
    """None when this pyabc has every internal used here in the shape it was checked with; else what differs
    (one phrase naming it)."""
    from pyabc.storage import db_model

    for (cls, name), expected in OVERRIDDEN.items():
        func = getattr(cls, name, None)
        if func is None or not callable(func):
            return f"{cls.__name__}.{name} is gone"
        if _parameters(func) != expected:
            return f"{cls.__name__}.{name} takes ({', '.join(_parameters(func))})"
    for kind, func in (("proposal", _simulate_one), ("prior", _simulate_one_from_prior)):
        missing = set(SIMULATE_KEYWORDS[kind]) - set(_parameters(func))
        if missing:
            return f"{func.__name__} lacks {', '.join(sorted(missing))}"
    for table, columns in SCHEMA.items():
        known = next((t for t in db_model.Base.metadata.tables.values() if t.name == table), None)
        if known is None or not set(columns) <= set(known.columns.keys()):
            return f"its database has no table {table} with columns {', '.join(columns)}"
    if not hasattr(pyabc.History, "DB_TIMEOUT"):
        return "History.DB_TIMEOUT is gone"
    if not isinstance(getattr(pyabc.StochasticAcceptor(), "pdf_norms", None), dict):
        return "StochasticAcceptor.pdf_norms is gone"
    return None


# ----------------------------------------------------------------------------------- simulate partials
def simulate_parts(simulate_one: Callable[[], Particle]) -> tuple[str | None, dict]:
    """What pyabc's simulate function is: ("prior", its keywords) for the draw from the prior, ("proposal",
    keywords) for propose-and-evaluate, (None, {}) for anything else (a function the samplers pass through)."""
    func, kw = getattr(simulate_one, "func", None), getattr(simulate_one, "keywords", None) or {}
    if func is _simulate_one_from_prior:
        return "prior", kw
    if func is _simulate_one and kw.get("evaluate", True):
        return "proposal", kw
    return None, {}


def is_identity(summary_statistics: Callable | None) -> bool:
    """Whether pyabc's summary statistics function is its default (the identity)."""
    return summary_statistics is identity


def empty_sample(sampler: pyabc.sampler.Sampler) -> Sample:
    """A new, empty pyabc Sample of `sampler` (what its own sample_until_n_accepted starts from)."""
    return sampler._create_empty_sample()


def pdf_norm(acceptor: pyabc.StochasticAcceptor, t: int) -> float:
    """StochasticAcceptor's normalisation of generation t's log-densities."""
    return float(acceptor.pdf_norms[t])


# ----------------------------------------------------------------------------------- database
def generation_weights(history: pyabc.History, t_from: int) -> np.ndarray:
    """(n, 2) rows (generation t, particle weight) of every particle of a run from generation t_from on, in one
    query (History.get_weighted_distances reads one generation through the ORM per call)."""
    import sqlalchemy

    query = sqlalchemy.text(
        "SELECT populations.t, particles.w FROM particles JOIN models ON particles.model_id = models.id "
        "JOIN populations ON models.population_id = populations.id "
        "WHERE populations.abc_smc_id = :run AND populations.t >= :t_from")
    engine = sqlalchemy.create_engine(history.db)
    try:
        with engine.connect() as con:
            rows = con.execute(query, {"run": int(history.id), "t_from": max(t_from, 0)}).fetchall()
    finally:
        engine.dispose()
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


# ----------------------------------------------------------------------------------- log text
# pyabc's own INFO lines of ABCSMC.run_generation (pyabc 0.13): the generation's threshold, then its result
_GENERATION_START = re.compile(r"^t: (\d+), eps: (\S+?)\.?$")
_GENERATION_DONE = re.compile(r"^Accepted: (\d+) / (\d+) = (\S+), ESS: (\S+?)\.?$")


def generation_record(record: logging.LogRecord) -> tuple[str, float, float] | None:
    """("start", t, epsilon) or ("done", acceptance rate, ESS) from one of pyabc's log records of a generation;
    None for any other record."""
    if record.funcName != "run_generation":
        return None
    text = record.getMessage()
    started = _GENERATION_START.match(text)
    if started:
        return "start", float(started.group(1)), float(started.group(2))
    done = _GENERATION_DONE.match(text)
    if done:
        return "done", float(done.group(3)), float(done.group(4))
    return None


# ----------------------------------------------------------------------------------- History and ABCSMC
class BulkHistory(pyabc.History):
    """pyabc's History, writing each population with one multi-row insert per table (same schema and rows), and
    opening one database engine for its lifetime instead of one per access (pyabc makes an engine, and checks
    the schema, on every read and write)."""

    _shared_engine = None
    _latest: tuple | None = None  # (t, {m: _population_arrays}) of the population written last

    def _make_session(self):
        from pyabc.storage.db_model import Base
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        if self._shared_engine is None or str(self._shared_engine.url) == "sqlite://":
            self._shared_engine = create_engine(self.db, connect_args={"timeout": self.DB_TIMEOUT})
            Base.metadata.create_all(self._shared_engine)
        self._engine = self._shared_engine
        self._session = Session(bind=self._engine)
        return self._session

    def _close_session(self):
        if self.in_memory:
            return
        self._session.close()
        self._session = None
        self._engine = None  # the shared engine stays open for the next access

    def __getstate__(self):
        dct = super().__getstate__()
        dct["_shared_engine"] = None
        dct["_latest"] = None
        return dct

    def get_distribution(self, m: int = 0, t: int | None = None):
        """pyabc's (parameters DataFrame, normalised weights) of model m at generation t; the population this
        History wrote last is answered from memory (the same frame pyabc's query and pivot give: particle ids
        as the sorted index `id`, parameter names as the sorted columns `name`), any other from the database."""
        latest = self._latest
        if t is None or latest is None or latest[0] != int(t) or int(m) not in latest[1]:
            return super().get_distribution(m, t)
        ids, names, values, w = latest[1][int(m)]
        frame = pd.DataFrame(values.copy(), index=pd.Index(ids.copy(), name="id"), columns=pd.Index(names, name="name"))
        return frame, w / w.sum()

    @with_session
    def _save_to_population_db(self, t, current_epsilon, nr_simulations, particles_by_model, model_probabilities,
                               model_names, wall_time=None):
        from pyabc.storage.db_model import ABCSMC, Model, Particle, Population, Sample
        from pyabc.storage.db_model import Parameter as DbParameter
        from sqlalchemy import func, insert, select

        self._latest = None
        if self.stores_sum_stats:  # summary statistics: pyabc's own writer
            return super()._save_to_population_db(t, current_epsilon, nr_simulations, particles_by_model,
                                                   model_probabilities, model_names, wall_time)
        session = self._session  # append_population (with_session) opened it
        abcsmc = session.query(ABCSMC).filter(ABCSMC.id == self.id).one()
        population = Population(t=t, nr_samples=nr_simulations, epsilon=current_epsilon, wall_time=wall_time)
        abcsmc.populations.append(population)
        models = {}
        for m in particles_by_model:
            model = Model(m=int(m), p_model=float(model_probabilities.loc[m, "p"]), name=str(model_names[m]))
            population.models.append(model)
            models[m] = model
        session.flush()  # ids of the population and its models
        next_id = int(session.execute(select(func.coalesce(func.max(Particle.id), 0))).scalar()) + 1
        particles, parameters, samples = [], [], []
        latest = {}
        for m, model_population in particles_by_model.items():
            first = len(parameters)
            for py_particle in model_population:
                pid = next_id
                next_id += 1
                particles.append({"id": pid, "model_id": models[m].id, "w": py_particle.weight,
                                  "proposal_id": py_particle.proposal_id})
                for key, value in py_particle.parameter.items():
                    if isinstance(value, dict):
                        parameters += [{"particle_id": pid, "name": f"{key}_{k}", "value": v} for k, v in value.items()]
                    else:
                        parameters.append({"particle_id": pid, "name": key, "value": value})
                samples.append({"particle_id": pid, "distance": py_particle.distance})
            latest[m] = _population_arrays(particles[len(particles) - len(model_population):], parameters[first:])
        for table, rows in ((Particle, particles), (DbParameter, parameters), (Sample, samples)):
            if rows:
                session.execute(insert(table.__table__), rows)
        session.commit()
        self._latest = (int(t), {int(m): v for m, v in latest.items() if v is not None})


def _population_arrays(particles: list[dict], parameters: list[dict]) -> tuple | None:
    """(ids, sorted parameter names, values (n, names), weights) of one model's rows as written, floats as the
    database returns them; None where the rows are not a full float table (the database then answers)."""
    if not particles:
        return None
    names = sorted({p["name"] for p in parameters})
    ids = np.array([p["id"] for p in particles], dtype=np.int64)
    col = {n: j for j, n in enumerate(names)}
    values = np.full((len(ids), len(names)), np.nan)
    row = {int(i): r for r, i in enumerate(ids)}
    try:
        for p in parameters:
            values[row[p["particle_id"]], col[p["name"]]] = float(p["value"])
        w = np.array([float(p["w"]) for p in particles], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if np.isnan(values).any():
        return None
    return ids, names, values, w


class BatchedABCSMC(pyabc.ABCSMC):
    """pyabc.ABCSMC whose Temperature records get their densities in one batch, storing through BulkHistory."""

    _sample = None

    def new(self, db: str, *args: Any, **kwargs: Any):
        history = super().new(db, *args, **kwargs)
        self.history = BulkHistory(db, stores_sum_stats=history.stores_sum_stats, _id=history.id)
        return self.history

    def _create_transition_pdf(self, t: int, transitions):
        density: _CachedDensity
        if t == 0:
            density = PriorDensity(self.model_prior, self.parameter_priors)
        else:
            density = TransitionDensity.from_frame(transitions, self.history.get_model_probabilities(t - 1),
                                                   self.model_perturbation_kernel)
        if self._sample is not None:  # get_all_records is about to ask for every particle of this sample
            density.prefill(self._sample.all_particles)
        return density

    def run_generation(self, t: int) -> dict:
        """pyabc's generation (sample, store, prepare the next), with the cyclic collector paused throughout: its
        ~10^5 particles are freed by reference counting when it returns, before the collector would see them."""
        with gc_paused():
            return super().run_generation(t)

    def _prepare_next_iteration(self, t, sample, population, acceptance_rate):
        self._sample = sample
        try:
            return super()._prepare_next_iteration(t, sample, population, acceptance_rate)
        finally:
            self._sample = None
