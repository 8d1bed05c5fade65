"""ABC-SMC inference with emulators: observed data -> pyabc -> ArviZ outputs."""
from __future__ import annotations

from .run import ChainResult, InferenceSettings, run_chains

__all__ = ["ChainResult", "InferenceSettings", "run_chains"]
