"""What the calibration benchmarks (calibration_shift, calibration_reweight, calibration_sampler) share: their
command line's study folders, --emulator and --limit, and the study those name, read back."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surrogate_abc.emulators.resolve import resolve_emulator  # noqa: E402
from surrogate_abc.inference.calibration.report import finished_datasets  # noqa: E402
from surrogate_abc.inference.priors import prior_box  # noqa: E402


def study_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the folders, --emulator and --limit; the script adds its own options."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="calibrate --out folders (their ds_* subfolders)")
    ap.add_argument("--emulator", default=None, help="emulator file (default: the one the first result names)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many datasets (in folder order)")
    return ap


@dataclass
class Study:
    datasets: list[tuple[Path, dict[str, Any]]]  # (folder, its result.json), every finished one
    emulator: Any
    names: list[str]  # the protocol's parameters
    box: dict[str, tuple[str, float, float]]  # its prior (priors.prior_box)

    @property
    def protocol(self) -> Any:
        return self.emulator.protocol


def open_study(args: argparse.Namespace) -> Study:
    """The finished datasets of args.dirs and the emulator (args.emulator, else the one the first result names);
    a UserError reaches the script's entry (benchmarks/_main.run), which ends it with its one line."""
    datasets = finished_datasets(args.dirs)
    emulator, _ = resolve_emulator(args.emulator or datasets[0][1]["emulator"])
    return Study(datasets, emulator, list(emulator.protocol.param_names), prior_box(emulator.protocol))
