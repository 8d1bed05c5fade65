"""pyabc's ABC-SMC with its per-particle hot paths made batch-shaped (the fast path of `infer`).

pyabc evaluates the prior and transition densities one particle at a time (`_prior_pdf`, `_transition_pdf`:
a pandas `iterrows` over the model probabilities and a Series lookup per call) for every accepted particle's
weight, and again for *every* particle, accepted or not, when the Temperature schedule collects its records
(`get_all_records`); and its History stores a population through the SQLAlchemy ORM, one object per particle,
parameter and distance. On the shipped protein example these take ~90% of the ABC wall time. Here:

* `PriorDensity` and `TransitionDensity` are drop-in replacements for those two functions (the same
  (m, Parameter) -> density call, the same numbers to ~1e-15 relative), which compute the densities of many
  particles in one array operation (`prefill`) and answer later calls from that cache.
* `DeferredWeights` is a weight function for pyabc's own `evaluate_proposal` that records each accepted
  particle and fills in all their weights at once (`resolve`), with pyabc's formula
  acceptance weight x prior density / transition density.
* `stochastic_acceptance` is pyabc.StochasticAcceptor's decision for a batch of log-densities at once, drawing
  the same uniforms from numpy's global generator as the acceptor would one particle at a time.
* `BatchedABCSMC` (a pyabc.ABCSMC) prefills the densities of the whole sample before the Temperature
  schedule asks for them, and stores populations through `BulkHistory`; `gc_paused` keeps Python's cyclic
  garbage collector from traversing a generation's particles while they are made and judged.
* `BulkHistory` (a pyabc.History) writes a population's rows (particles, their parameters, their distances)
  with one multi-row insert per table instead of the ORM's unit of work: the same tables and rows, so
  `pyabc.History` opens the database as before; the population it wrote last is read back from memory.

They rely on pyabc internals named in `PYABC_INTERNALS`; tests/test_batched_abc.py fails loudly when one of
them changes, and pyproject pins the pyabc versions this was checked with.
"""
from __future__ import annotations

import contextlib
import gc
import math
import operator
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyabc
from pyabc.storage.history import with_session
from pyabc.transition import MultivariateNormalTransition

# What this module relies on beyond pyabc's public API (checked by tests/test_batched_abc.py).
PYABC_INTERNALS = (
    "pyabc.inference.smc.ABCSMC._create_transition_pdf",
    "pyabc.inference.smc.ABCSMC._prepare_next_iteration",
    "pyabc.inference.smc.ABCSMC.run_generation",
    "pyabc.storage.history.History._save_to_population_db",
    "pyabc.storage.history.History._make_session",
    "pyabc.storage.history.History._close_session",
    "pyabc.inference_util.inference_util._weight_function",
    "pyabc.inference_util.inference_util.evaluate_proposal",
    "pyabc.storage.history.with_session",
    "pyabc.acceptor.StochasticAcceptor.__call__",
    "pyabc.inference.smc.identity",
)
_CHUNK = 1 << 15  # at most ~this many (particle, ancestor) pairs per array operation (cache-sized)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a block, restored as it was on exit. A generation allocates
    ~10^5 particles, Parameters and records; the collections they trigger traverse all of them again and again
    (~15% of a chain's wall time on the protein example, measured A/B). They are acyclic, so reference counting
    frees them as before; between blocks the collector runs as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pairs(items: Iterable[Any]) -> list[tuple[int, Any]]:
    """(model, Parameter) pairs from pyabc Particles or from such pairs."""
    return [(int(x[0]), x[1]) if type(x) is tuple else (int(x.m), x.parameter) for x in items]


class _CachedDensity:
    """A density of (model index, Parameter), cached per Parameter object; subclasses compute a batch."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, float]] = {}

    def _batch(self, m: int, params: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def prefill(self, items: Iterable[Any]) -> None:
        """Compute and cache the densities of many particles (pyabc Particles or (m, Parameter) pairs)."""
        by_model: dict[int, list[Any]] = {}
        for m, par in _pairs(items):
            if id(par) not in self._cache:
                by_model.setdefault(m, []).append(par)
        for m, params in by_model.items():
            for par, value in zip(params, self._batch(m, params)):
                self._cache[id(par)] = (par, float(value))  # the Parameter is kept, so its id is not reused

    def __call__(self, m_ss: int, theta_ss: Any) -> float:
        hit = self._cache.get(id(theta_ss))
        if hit is not None and hit[0] is theta_ss:
            return hit[1]
        return float(self._batch(int(m_ss), [theta_ss])[0])


def parameter_matrix(params: Sequence[Any], names: Sequence[str]) -> np.ndarray:
    """(n, len(names)) float64 values of pyabc Parameters (mappings), columns in `names` order."""
    get = operator.itemgetter(*names)
    rows = [get(p) for p in params] if len(names) > 1 else [(get(p),) for p in params]
    return np.array(rows, dtype=np.float64).reshape(len(params), len(names))


class PriorDensity(_CachedDensity):
    """pyabc's prior density model_prior.pmf(m) * parameter_priors[m].pdf(theta), batched over particles."""

    def __init__(self, model_prior: Any, parameter_priors: Sequence[Any]):
        super().__init__()
        self.model_prior, self.parameter_priors = model_prior, list(parameter_priors)

    def _batch(self, m: int, params: Sequence[Any]) -> np.ndarray:
        prior = self.parameter_priors[m]
        factor = self.model_prior.pmf(m)
        names = list(params[0].keys()) if params else []
        if not all(type(prior[k]) is pyabc.RV for k in names) or sorted(names) != sorted(prior.keys()):
            return np.array([factor * prior.pdf(p) for p in params], dtype=np.float64)
        x = parameter_matrix(params, names)
        out = np.ones(len(params))
        for j, k in enumerate(names):  # the marginals' product, in the Parameter's key order as pyabc takes it
            out = out * np.asarray(prior[k].pdf(x[:, j]), dtype=np.float64)
        return factor * out


class TransitionDensity(_CachedDensity):
    """pyabc's transition density: sum_m' p(m') kernel(m | m') x transitions[m].pdf(theta), batched."""

    def __init__(self, transitions: Sequence[Any], models: Sequence[int], probabilities: Sequence[float],
                 model_perturbation_kernel: Any):
        super().__init__()
        self.transitions = list(transitions)
        self._models, self._p = [int(m) for m in models], [float(p) for p in probabilities]
        self.kernel = model_perturbation_kernel

    @classmethod
    def from_frame(cls, transitions: Sequence[Any], model_probabilities: Any, kernel: Any) -> "TransitionDensity":
        """From pyabc's model-probability frame (index m, column p), as ABCSMC holds it."""
        return cls(transitions, list(model_probabilities.index), list(model_probabilities["p"]), kernel)

    def model_factor(self, m: int) -> float:
        return sum(p * self.kernel.pmf(m, mm) for mm, p in zip(self._models, self._p))

    def _batch(self, m: int, params: Sequence[Any]) -> np.ndarray:
        tr = self.transitions[m]
        factor = self.model_factor(m)
        if type(tr) is not MultivariateNormalTransition:
            return np.array([factor * tr.pdf(p) for p in params], dtype=np.float64)
        x = parameter_matrix(params, list(tr.X.columns))
        anc, w = np.asarray(tr._X_arr, dtype=np.float64), np.asarray(tr.w, dtype=np.float64)
        return factor * gaussian_mixture_density(x, anc, w, np.asarray(tr.cov, dtype=np.float64))


def gaussian_mixture_density(x: np.ndarray, centres: np.ndarray, weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """sum_j weights_j N(x_i; centres_j, cov) for each row x_i: (n, d), (N, d), (N,), (d, d) -> (n,).

    The density of scipy's multivariate_normal(cov=cov, allow_singular=True) (pseudo-inverse and pseudo-
    determinant over the eigenvalues above scipy's cutoff), with the Mahalanobis distances of all pairs from one
    matrix product of whitened, centred points: |a|^2 + |b|^2 - 2 a.b."""
    s, u = np.linalg.eigh(cov)
    keep = s > 1e6 * np.finfo(np.float64).eps * np.max(np.abs(s))  # scipy's _eigvalsh_to_eps for float64
    white = u[:, keep] / np.sqrt(s[keep])
    log_norm = -0.5 * (int(keep.sum()) * math.log(2 * math.pi) + float(np.sum(np.log(s[keep]))))
    mid = centres.mean(axis=0) if len(centres) else np.zeros(x.shape[1])
    a, b = (x - mid) @ white, (centres - mid) @ white
    # the exponent log_norm - |a - b|^2 / 2 = (log_norm - |a|^2 / 2) + (-|b|^2 / 2) + a.b, built in place
    half_aa = log_norm - 0.5 * np.einsum("ij,ij->i", a, a)
    half_bb = -0.5 * np.einsum("ij,ij->i", b, b)
    bt = np.ascontiguousarray(b.T)
    rows = max(1, _CHUNK // max(len(b), 1))
    out = np.empty(len(x))
    for st in range(0, len(x), rows):
        z = a[st:st + rows] @ bt
        z += half_bb
        z += half_aa[st:st + rows, None]
        np.minimum(z, log_norm, out=z)  # a squared distance is >= 0 (rounding can make it slightly negative)
        np.exp(z, out=z)
        out[st:st + rows] = z @ weights
    return out


class DeferredWeights:
    """A weight function for pyabc's evaluate_proposal that defers the densities: each call records the
    accepted particle's acceptance weight and returns NaN; `resolve()` then sets every recorded particle's
    weight to acceptance weight * prior density / transition density, computed in one batch (pyabc's
    `_weight_function`, term by term)."""

    def __init__(self, prior_pdf: _CachedDensity, transition_pdf: _CachedDensity):
        self.prior_pdf, self.transition_pdf = prior_pdf, transition_pdf
        self._pending: list[tuple[int, Any, float]] = []
        self._particles: list[Any] = []

    def __call__(self, m_ss: int, theta_ss: Any, acceptance_weight: float) -> float:
        self._pending.append((int(m_ss), theta_ss, float(acceptance_weight)))
        return math.nan

    def bind(self, particle: Any) -> None:
        """The particle whose weight the last call deferred (evaluate_proposal made it)."""
        self._particles.append(particle)

    def resolve(self) -> None:
        pairs = [(m, th) for m, th, _ in self._pending]
        self.prior_pdf.prefill(pairs)
        if self.transition_pdf is not self.prior_pdf:
            self.transition_pdf.prefill(pairs)
        for (m, th, aw), particle in zip(self._pending, self._particles):
            particle.weight = aw * self.prior_pdf(m, th) / self.transition_pdf(m, th)
        self._pending.clear()
        self._particles.clear()


def stochastic_acceptance(acceptor: Any, eps: Any, t: int, log_density: np.ndarray,
                          needed: int) -> tuple[int, np.ndarray, np.ndarray]:
    """pyabc.StochasticAcceptor's decisions for a batch of log-scale kernel values, in order, up to the
    `needed`-th acceptance: (rows decided, accepted (n,), acceptance weights (n,)); only the first `rows
    decided` entries count. As the acceptor does per particle: acceptance probability
    exp((log density - pdf_norm) / temperature), accepted when it reaches a uniform draw, weight
    probability / min(1, probability) (importance weighting) or 1, and 0 where the probability is 0.
    It takes exactly one uniform per decided row from numpy's global generator, as that many acceptor calls
    would, so a run draws the same numbers as pyabc's per-particle path."""
    log_density = np.asarray(log_density, dtype=np.float64)
    prob = np.exp((log_density - acceptor.pdf_norms[t]) * (1 / eps(t)))
    state = np.random.get_state()
    accepted = prob >= np.random.uniform(low=0, high=1, size=len(prob))
    hits = np.flatnonzero(accepted)
    rows = len(prob) if len(hits) < needed else int(hits[needed - 1]) + 1
    if rows < len(prob):  # give back the uniforms of the undecided rows
        np.random.set_state(state)
        np.random.uniform(low=0, high=1, size=rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = prob / np.minimum(1.0, prob) if acceptor.apply_importance_weighting else np.ones(len(prob))
    return rows, accepted, np.where(prob == 0.0, 0.0, weight)


def sampler_densities(kw: dict) -> tuple[PriorDensity, _CachedDensity]:
    """(prior, transition) densities of one generation from the keywords of pyabc's simulate function."""
    prior = PriorDensity(kw["model_prior"], kw["parameter_priors"])
    if kw["t"] == 0:
        return prior, prior
    return prior, TransitionDensity(kw["transitions"], kw["m"], kw["p"], kw["model_perturbation_kernel"])


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
