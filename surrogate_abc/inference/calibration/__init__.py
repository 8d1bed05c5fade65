"""`surrogate-abc calibrate`: the coverage study of an emulator, apart from single-dataset inference.

study.py (the driver: datasets at prior draws, each inferred, resumable), datasets.py (exact datasets: FSP or
closed-form pmfs and cells), stats.py (coverage of central intervals and the HDI, SBC ranks, contraction,
predictive Hellinger), bounds.py (--near-bounds: truths near a prior bound and their table), report.py (tables,
CSVs, the SBC plot, and finished_datasets: a study's folders read back), shift.py (the first-order posterior shift an emulator's likelihood error causes at a
dataset: benchmarks/calibration_shift.py).
"""
from .study import CALIBRATE_OPTIONS, calibrate

__all__ = ["CALIBRATE_OPTIONS", "calibrate"]
