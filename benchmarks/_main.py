"""The benchmark scripts' entry point: a UserError (a missing file, a bad option) ends the script with its one
line and exit status 2, as the command line does, instead of a traceback."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from surrogate_abc.errors import UserError  # noqa: E402


def run(main: Callable[[], int | None]) -> None:
    """Call main() and exit with its status (None: 0); a UserError prints `error: ...` to stderr and exits 2."""
    try:
        status = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(status or 0)
