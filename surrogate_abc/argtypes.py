"""Types of command-line values (argparse `type=` functions): a bad value is one line naming the expected form."""
from __future__ import annotations

import argparse


def non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def prior_override(text: str) -> tuple[str, tuple[float, float]]:
    """NAME=LOW:HIGH -> (name, (low, high))."""
    try:
        name, rng = text.split("=", 1)
        lo, hi = rng.split(":")
        return name.strip(), (float(lo), float(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH, got {text!r}") from None


def species_map(text: str) -> dict[str, str]:
    """SPECIES=COLUMN[,SPECIES=COLUMN] -> {species: column}."""
    out = {}
    for part in text.split(","):
        name, sep, col = part.partition("=")
        if not sep or not name.strip() or not col.strip():
            raise argparse.ArgumentTypeError(f"expected SPECIES=COLUMN[,SPECIES=COLUMN], got {text!r}")
        out[name.strip()] = col.strip()
    return out


def name_list(text: str) -> list[str]:
    """A,B,... -> [names] (at least one)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return names


def interval(text: str) -> tuple[float, float]:
    """LOW:HIGH -> (low, high)."""
    try:
        lo, hi = text.split(":")
        return float(lo), float(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, got {text!r}") from None


def layer_pair(text: str) -> tuple[str, str]:
    """NASCENT,MATURE -> (nascent, mature): two distinct layer names."""
    names = [t.strip() for t in text.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"expected two distinct layer names, nascent first (e.g. unspliced,spliced), "
                                         f"got {text!r}")
    return names[0], names[1]


def capture_values(text: str) -> float | tuple[float, float]:
    """BETA -> beta; NASCENT,MATURE -> (nascent's, mature's): one detection probability, or one per layer."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BETA or NASCENT,MATURE (numbers in (0, 1]), got {text!r}") \
            from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected one efficiency, or two (nascent,mature with --layers), got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])
