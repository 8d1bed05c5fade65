"""`--layers unspliced,spliced`: every gene on its joint (nascent, mature) counts from two layers of an AnnData.

The batch method takes the joint histograms (data/joint_histograms.py) as it takes one layer's: the categories of
a joint emulator of two species (the shipped `telegraph_splicing` one), bins then the overflow. These checks stop a
run before anything is read: the options that exclude each other, an input that has no layers, an emulator of the
wrong number of species.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...data.tables import ANNDATA_SUFFIXES
from ...emulators.base import EmulatorLike
from ...errors import UserError

LAYER_SPECIES = ("nascent", "mature")  # what the first and second layer hold (the default emulator's species)


def check_layers(layers: tuple[str, str] | None, emulator: EmulatorLike, path: str, adata: Any = None,
                 layer: str | None = None) -> None:
    """UserError where the options and the emulator do not fit: one species per gene without `layers`, two
    (nascent, mature) with them, read from an AnnData (the file at `path`, or `adata`), without --layer beside
    them."""
    species = tuple(emulator.species)
    if not layers:
        if len(species) != 1:
            raise UserError(f"--method batch: emulator {emulator.source} models {'+'.join(species)}; the batch "
                            "method infers one species per gene (or two with --layers NASCENT,MATURE); use "
                            "--method smc with --species")
        return
    first, second = layers
    if layer is not None:
        raise UserError("--layer and --layers exclude each other: --layers names both layers (nascent first)")
    if adata is None and Path(path).suffix.lower() not in ANNDATA_SUFFIXES:
        raise UserError(f"--layers {first},{second}: {path} is no AnnData (.h5ad) file; layers live in an "
                        "AnnData's .layers")
    if len(species) != 2:
        raise UserError(f"--layers {first},{second}: emulator {emulator.source} models {'+'.join(species)}; give "
                        "a joint emulator of two species, nascent then mature (the default: telegraph_splicing)")
