"""ABC-SMC inference with emulators: observed data -> pyabc -> ArviZ outputs; and the batch method for count
tables (transcriptome/). Exports are lazy (PEP 562): importing a part that needs no pyabc (the batch method's
importance sampling, the calibration statistics) does not import pyabc."""
from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"ChainResult": "pyabc_bridge.history", "InferenceSettings": "settings",
                                               "run_chains": "run"})
