"""ABC-SMC inference with emulators: observed data -> pyabc -> ArviZ outputs."""
from __future__ import annotations

from .chain_result import ChainResult
from .run import InferenceSettings, run_chains

__all__ = ["ChainResult", "InferenceSettings", "run_chains"]
