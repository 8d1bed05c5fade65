"""`surrogate-abc infer`: observed data + emulator -> ABC-SMC chains -> posterior.nc, summary.csv, PNGs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.observed import (
    check_observed_in_domain,
    check_observed_predictive,
    load_observed,
    observed_histogram,
    select_species,
)
from ..errors import UserError
from ..report import warn
from .run import InferenceSettings, run_chains

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_EMULATORS = {"protein": "gene_protein.safetensors", "joint": "gene_joint.safetensors"}
# The species each default emulator models; data holding them choose it (the one with most species wins).
DEFAULT_SPECIES = {"joint": ("mrna", "protein"), "protein": ("protein",)}


def default_emulator_path(species: tuple[str, ...]) -> Path:
    """The shipped emulator for observed data with these species; UserError when none fits."""
    fits = [k for k, sp in DEFAULT_SPECIES.items() if set(sp) <= set(species)]
    if not fits:
        known = "; ".join(f"{'+'.join(sp)} -> {DEFAULT_EMULATORS[k]}" for k, sp in DEFAULT_SPECIES.items())
        raise UserError(f"no default emulator for data with {'+'.join(species) or 'no species'} (defaults: {known}); "
                        "pass --emulator PATH.safetensors or exact:<protocol>")
    return RESOURCES / DEFAULT_EMULATORS[max(fits, key=lambda k: len(DEFAULT_SPECIES[k]))]


def resolve_emulator(spec: str | None, species: tuple[str, ...] = ()) -> tuple[Any, str]:
    """(emulator, sha256) for --emulator: a .safetensors path, 'exact:<protocol>' (ExactEmulator), or None for the
    default emulator in surrogate_abc/resources/ for the observed `species` (DEFAULT_EMULATORS)."""
    if spec and spec.startswith("exact:"):
        from ..emulators.exact import exact_emulator

        em = exact_emulator(spec)
        return em, em.sha256
    if spec is None:
        path = default_emulator_path(species)
        if not path.is_file():
            raise UserError(f"the default emulator {path.name} is not installed (looked in {RESOURCES}); "
                            "pass --emulator PATH.safetensors (or --emulator exact:<protocol> for small models)")
    else:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"--emulator {spec}: file not found; give a .safetensors emulator or exact:<protocol>")
    try:
        from ..emulators.io import load_emulator
    except ImportError as exc:
        raise UserError(f"cannot load neural emulators in this installation ({exc}); use --emulator exact:<protocol>") from None
    from ..data.schema import file_sha256

    return load_emulator(path), file_sha256(path)  # its source is the file it came from


def emulator_error_note(emulator: Any, n_cells: int, max_nats: float = 1.0) -> str | None:
    """A note when the emulator's held-out error, summed over the observed cells, exceeds max_nats.

    An emulator off by KL per cell shifts the log-likelihood of N cells by about N x KL nats (KLD: the
    max-divergence of its validation metrics, else H2); above ~1 nat the posterior may be shifted or too narrow."""
    vm = emulator.metadata.get("validation_metrics") or {}
    kl = vm.get("KLD", vm.get("H2"))
    if not isinstance(kl, (int, float)) or not np.isfinite(kl) or n_cells * kl <= max_nats:
        return None
    return (f"this emulator's held-out error is KLD {kl:.2g} per cell (H2 {vm.get('H2', float('nan')):.2g}), "
            f"about {n_cells * kl:.1f} nats over {n_cells} cells: the posterior may be shifted or too narrow; "
            "an emulator trained to a smaller error (README: training your own) gives calibrated intervals")


def default_out_dir(observed_path: str | Path) -> Path:
    """./surrogate-abc-<observed file stem>/"""
    return Path.cwd() / f"surrogate-abc-{Path(observed_path).stem}"


def infer(observed_path: str | Path, emulator_spec: str | None, settings: InferenceSettings, out_dir: Path | None,
          command: str = "", log: Callable[[str], None] = print, sampler_factory=None) -> tuple[Path, str]:
    """Run the whole inference; returns (posterior.nc path, summary table text)."""
    from .output import build_inference_data, write_outputs
    from .priors import prior_box

    settings.check()
    if emulator_spec is None:  # the data's species choose the default emulator
        observed = load_observed(observed_path)
        emulator, sha = resolve_emulator(None, observed.species)
    else:  # the emulator's protocol names the datasets to read
        emulator, sha = resolve_emulator(emulator_spec)
        observed = load_observed(observed_path, tuple(emulator.species))
    name = emulator.source
    observed = select_species(observed, tuple(emulator.species))
    hist, overflow = observed_histogram(observed, tuple(emulator.edges))
    from ..emulators.exact import ExactEmulator

    if isinstance(emulator, ExactEmulator):  # FSP per parameter set: too slow for a predictive check
        check_observed_in_domain(observed, emulator.protocol, name)
    else:
        check_observed_predictive(observed, hist, overflow, emulator, name)
    note = emulator_error_note(emulator, observed.n_cells)
    if note:
        warn(note)
    out = Path(out_dir) if out_dir else default_out_dir(observed_path)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "abc.db"
    if db.exists():
        db.unlink()  # a fresh database: chains of an earlier run must not mix with this one's
    log(f"{observed.n_cells} cells ({'+'.join(observed.species)}), emulator {name}, mode {settings.mode}, "
        f"{settings.chains} chain(s) of population {settings.population}; writing {out}")
    chains = run_chains(emulator, hist, overflow, settings, db, log=log, sampler_factory=sampler_factory)
    box = prior_box(emulator.protocol, settings.prior)
    attrs = {
        "emulator": name, "emulator_sha256": sha, "command": command, "mode": settings.mode,
        "distance": settings.distance if settings.mode == "simulator" else "multinomial log-likelihood",
        "config_toml": emulator.protocol.toml_text, "network_toml": emulator.protocol.network_toml, "protocol": emulator.protocol.name,
        "prior": json.dumps({k: list(v) for k, v in box.items()}),
        "true_params": json.dumps(observed.true_params()),
        "edges": json.dumps({s: np.asarray(e, float).tolist() for s, e in zip(emulator.species, emulator.edges)}),
        "species": ",".join(emulator.species), "n_cells": int(observed.n_cells),
        "observed_file": str(observed_path), "abc_db": str(db), "seed": int(settings.seed),
    }
    idata = build_inference_data(chains, emulator, hist, overflow, attrs, seed=settings.seed)
    return write_outputs(idata, out)
