"""Which emulator `--emulator` means: a .safetensors file, `exact:<protocol>`, a protocol name (its shipped
emulator, else its exact model), or nothing (the shipped default for the observed species)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UserError
from .base import EmulatorLike

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_EMULATORS = {"protein": "gene_protein.safetensors", "joint": "gene_joint.safetensors",
                     "mrna": "telegraph_mrna.safetensors", "splicing": "telegraph_splicing.safetensors"}
# The species each default emulator models; data holding them choose it (the one with most species wins).
DEFAULT_SPECIES = {"joint": ("mrna", "protein"), "protein": ("protein",), "mrna": ("mrna",),
                   "splicing": ("nascent", "mature")}


def default_emulator_path(species: tuple[str, ...]) -> Path:
    """The shipped emulator for observed data with these species; UserError when none fits."""
    fits = [k for k, sp in DEFAULT_SPECIES.items() if set(sp) <= set(species)]
    if not fits:
        known = "; ".join(f"{'+'.join(sp)} -> {DEFAULT_EMULATORS[k]}" for k, sp in DEFAULT_SPECIES.items())
        raise UserError(f"no default emulator for data with {'+'.join(species) or 'no species'} (defaults: {known}); "
                        "pass --emulator PATH.safetensors or exact:<protocol>")
    return RESOURCES / DEFAULT_EMULATORS[max(fits, key=lambda k: len(DEFAULT_SPECIES[k]))]


def resolve_emulator(spec: str | None, species: tuple[str, ...] = ()) -> tuple[EmulatorLike, str]:
    """(emulator, sha256) for --emulator: a .safetensors path, 'exact:<protocol>' (ExactEmulator), a protocol name
    (its shipped emulator in surrogate_abc/resources/, else the exact model), or None for the default emulator
    for the observed `species` (DEFAULT_EMULATORS)."""
    if spec and spec.startswith("exact:"):
        from .exact import exact_emulator

        em = exact_emulator(spec)
        return em, em.sha256
    if spec is None:
        path = default_emulator_path(species)
        if not path.is_file():
            raise UserError(f"the default emulator {path.name} is not installed (looked in {RESOURCES}); "
                            "pass --emulator PATH.safetensors (or --emulator exact:<protocol> for small models)")
    else:
        path = Path(spec)
        if path.suffix == ".toml":  # a protocol file: its exact model
            return protocol_emulator(spec)
        if not path.is_file():
            if path.suffix or "/" in spec:
                raise UserError(f"--emulator {spec}: file not found; give a .safetensors emulator, a protocol name "
                                "or exact:<protocol>")
            return protocol_emulator(spec)
    try:
        from .io import load_emulator
    except ImportError as exc:
        raise UserError(f"cannot load neural emulators in this installation ({exc}); use --emulator exact:<protocol>") from None
    from ..data.schema import file_sha256

    return load_emulator(path), file_sha256(path)  # its source is the file it came from


def protocol_emulator(name: str) -> tuple[Any, str]:
    """The emulator of a shipped protocol by name: its shipped neural emulator (resources/<name>.safetensors)
    when there is one, else the exact model (closed form or FSP); UserError for an unknown name."""
    shipped = RESOURCES / f"{name}.safetensors"
    if "/" not in name and not name.endswith(".toml") and shipped.is_file():
        return resolve_emulator(str(shipped))
    from .exact import exact_emulator

    em = exact_emulator(name)  # ConfigError (one line) for a name that is no protocol
    return em, em.sha256


def model_specs(emulator_spec: str | None, compare: Sequence[str] | None) -> list[str | None]:
    """The models to run: the --compare list, or the one --emulator (None: the default emulator)."""
    if compare and emulator_spec is not None:
        raise UserError("--emulator and --compare exclude each other: list every model in --compare")
    return list(compare) if compare else [emulator_spec]


def resolve_models(specs: Sequence[str | None], species: tuple[str, ...] = (),
                   capture: float | tuple[float, ...] | None = None,
                   capture_prior: tuple[float, float] | None = None) -> list[tuple[EmulatorLike, str]]:
    """[(emulator, sha256)] for --emulator or the --compare list, each wrapped for capture efficiency
    (emulators/capture.py) when a capture or its prior is given (beta = 1 leaves the emulator as it is)."""
    from .capture import check_capture

    check_capture(capture, capture_prior)
    out = []
    for spec in specs:
        em, sha = resolve_emulator(spec, species)
        if capture_prior is not None or (capture is not None and np.any(np.asarray(capture) != 1.0)):
            em = captured(em, capture, capture_prior)
        out.append((em, sha))
    names = [em.protocol.name for em, _ in out]
    if len(set(names)) != len(names):
        raise UserError(f"--compare: a model is named twice ({', '.join(names)}); compare distinct protocols")
    return out


def captured(emulator: EmulatorLike, capture: float | tuple[float, ...] | None, prior: tuple[float, float] | None,
             scale: float = 1.0) -> EmulatorLike:
    """`emulator` under binomial capture: thinning its own pmf for one species (capture.CapturedEmulator), else
    scaling the birth rate of a network whose observed molecules are Poisson given the rest (rate_capture.py)."""
    from .capture import CapturedEmulator
    from .rate_capture import RateCapture

    if len(emulator.species) > 1:
        return RateCapture(emulator, capture, prior, scale)
    return CapturedEmulator(emulator, capture=capture, prior=prior, scale=scale)  # one capture: it says so otherwise
