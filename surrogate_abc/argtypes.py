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
