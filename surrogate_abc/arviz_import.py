"""arviz, imported quietly: one place, used by the outputs and the plots (which no longer import each other)."""
from __future__ import annotations

import warnings
from typing import Any


def import_arviz() -> Any:
    """arviz, imported without its FutureWarnings. The matplotlib backend is left as the caller has it: every
    figure of this package is a Figure object (surrogate_abc/plots.py), none needs pyplot's backend."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az
