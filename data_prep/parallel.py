"""MPI when launched by mpiexec, a single-process stand-in otherwise.

mpi4py is imported only when an MPI launcher's environment is present, so plain runs never
initialise MPI (and never need it installed).
"""

from __future__ import annotations

import os
import sys

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class SingleProcess:
    """The communicator of a run without MPI: one rank."""

    rank = 0
    size = 1

    def barrier(self) -> None:
        pass

    def bcast(self, obj, root: int = 0):
        return obj

    def gather(self, obj, root: int = 0):
        return [obj]

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        os._exit(code)


class MpiComm:
    """Thin wrapper over ``MPI.COMM_WORLD`` with the few collectives the encoder uses."""

    def __init__(self, comm):
        self._comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def barrier(self) -> None:
        self._comm.Barrier()

    def bcast(self, obj, root: int = 0):
        return self._comm.bcast(obj, root=root)

    def gather(self, obj, root: int = 0):
        return self._comm.gather(obj, root=root)

    def abort(self, code: int = 1) -> None:
        # Abort kills every rank, so a failure on one rank can never leave the others
        # waiting forever in a collective.
        sys.stderr.flush()
        self._comm.Abort(code)


def launched_by_mpi() -> bool:
    return any(name in os.environ for name in _LAUNCHER_VARS)


def get_comm():
    """MpiComm under mpiexec, else SingleProcess."""
    if not launched_by_mpi():
        return SingleProcess()
    from mpi4py import MPI  # noqa: deferred so plain runs never initialise MPI

    return MpiComm(MPI.COMM_WORLD)
