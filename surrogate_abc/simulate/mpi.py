"""A minimal communicator: mpi4py's COMM_WORLD under `mpiexec`, a one-process stand-in otherwise.

mpi4py is imported only when the environment shows an MPI launch, so a plain single-process run
never needs MPI. Only the three collectives the runner uses are exposed.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

# Variables set by MPICH/Hydra (PMI_*), Open MPI (OMPI_*) and Intel MPI / MPICH (MPI_LOCALNRANKS).
MPI_ENV_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


class SerialComm:
    """The one-process communicator: rank 0 of 1; collectives are identities."""

    rank = 0
    size = 1

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        """[obj], as MPI gather on a single rank would return."""
        return [obj]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """obj itself."""
        return obj

    def barrier(self) -> None:
        """Nothing to wait for."""


def launched_under_mpi(environ: Mapping[str, str] | None = None) -> bool:
    """True when the process was started by mpiexec/mpirun with more than one rank (by environment only)."""
    env = os.environ if environ is None else environ
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if key in env:
            try:
                return int(env[key]) > 1
            except ValueError:
                return False
    return "PMI_RANK" in env or "MPI_LOCALNRANKS" in env


def get_comm(environ: Mapping[str, str] | None = None):
    """COMM_WORLD when launched under MPI with several ranks (and mpi4py works); SerialComm otherwise."""
    if not launched_under_mpi(environ):
        return SerialComm()
    try:
        from mpi4py import MPI
    except Exception:  # mpi4py or the MPI library missing: run as one process
        return SerialComm()
    comm = MPI.COMM_WORLD
    return SerialComm() if comm.Get_size() == 1 else comm
