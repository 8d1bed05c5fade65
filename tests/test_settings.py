"""Inference settings: grouped by concern, each option stated once (inference/settings.py) and reaching the command
line, the Python API and calibrate from there."""
from __future__ import annotations

import dataclasses

import pytest

from surrogate_abc.cli import build_parser
from surrogate_abc.inference.settings import (
    Algorithm,
    ExactFollowups,
    Execution,
    InferenceSettings,
    cli_fields,
    setting_names,
)


def test_flat_names_reach_their_groups_and_replace_keeps_the_rest():
    s = InferenceSettings(population=80, sampler="multicore", reweight="exact", plots=False, seed=7)
    assert s.algorithm == Algorithm(population=80, seed=7)
    assert s.execution == Execution(sampler="multicore") and s.exact == ExactFollowups(reweight="exact")
    assert s.plots is False
    t = s.replace(chains=3, chain_jobs=1)
    assert (t.algorithm.chains, t.algorithm.population, t.execution.chain_jobs, t.execution.sampler) == (3, 80, 1,
                                                                                                         "multicore")
    assert t.plots is False and s.algorithm.chains == 1  # frozen: s unchanged
    assert set(s.flat()) == set(setting_names())
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.plots = True  # type: ignore[misc]


def test_an_unknown_setting_is_a_type_error_listing_the_names():
    with pytest.raises(TypeError, match="unknown inference setting 'populaton'.*population"):
        InferenceSettings(populaton=10)


@pytest.mark.parametrize("bad, message", [({"mode": "x"}, "--mode 'x'"), ({"population": 0}, "--population must be"),
                                          ({"sampler": "mpi"}, "--sampler 'mpi'"), ({"check_budget": 0}, "--check-budget"),
                                          ({"min_acceptance_rate": 1.0}, "--min-acceptance-rate")])
def test_check_names_the_flag(bad, message):
    from surrogate_abc.errors import UserError

    with pytest.raises(UserError, match=message):
        InferenceSettings(**bad).check()


def test_the_command_lines_defaults_are_the_settings_defaults():
    """`infer` with no options gives InferenceSettings(); every CLI field of the groups is an option of `infer`."""
    from surrogate_abc.inference.settings import from_args

    args = build_parser().parse_args(["infer", "obs.h5"])
    s = InferenceSettings(from_args(Algorithm, args), from_args(Execution, args), from_args(ExactFollowups, args),
                          plots=not args.no_plots)
    assert s == InferenceSettings()
    args = build_parser().parse_args(["infer", "obs.h5", "--prior", "a=1:2", "--prior", "b=0.5:3", "--check", "none",
                                      "--population", "50", "--scheduler-address", "tcp://h:1"])
    s = InferenceSettings(from_args(Algorithm, args), from_args(Execution, args), from_args(ExactFollowups, args))
    assert dict(s.algorithm.prior) == {"a": (1.0, 2.0), "b": (0.5, 3.0)} and s.exact.exact_check == "none"
    assert s.algorithm.population == 50 and s.execution.scheduler_address == "tcp://h:1"
    for group in (Algorithm, Execution, ExactFollowups):
        assert all(hasattr(args, f.name) for f in cli_fields(group))


def test_calibrate_takes_the_algorithms_options_with_its_own_defaults():
    from surrogate_abc.inference.calibration.study import CALIBRATE_OPTIONS, calibration_algorithm

    args = build_parser().parse_args(["calibrate", "--datasets", "3", "--cells", "10", "--generations", "4"])
    assert calibration_algorithm(**{n: getattr(args, n) for n in CALIBRATE_OPTIONS}) == Algorithm(population=400,
                                                                                                  generations=4)
    with pytest.raises(TypeError, match="unknown option 'sampler'"):
        calibration_algorithm(sampler="dask")
