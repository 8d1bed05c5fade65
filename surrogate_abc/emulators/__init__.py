"""Neural emulators: MDNs and LSTM arrays (and bagged ensembles of them), the Emulator object, save/load.

Submodules are imported on first use (module __getattr__), so `import surrogate_abc.emulators` stays cheap:
the exact emulators and the file readers do not need the networks imported.
"""
from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "MDN": "mdn",
    "LSTMArray": "lstm",
    "PerBinLinear": "lstm",
    "PeepholeLSTMCell": "lstm",
    "MDNEnsemble": "ensemble",
    "LSTMEnsemble": "ensemble",
    "EMULATOR_TYPES": "models",
    "build_model": "models",
    "make_binning": "models",
    "ACTIVATIONS": "layers",
    "resolve_family": "layers",
    "Emulator": "emulator",
    "save_emulator": "io",
    "load_emulator": "io",
    "read_emulator_metadata": "io",
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
