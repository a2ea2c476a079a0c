"""Rank discovery: who am I, how many are we, where is rank 0 — for every way a job is started.

Launchers and the variables they set (checked in this order):

* the deepspeed launcher and torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT`` (also what ``srun ... torchrun`` / ``srun ... deepspeed`` one task per node gives);
* ``srun`` one task per rank: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``),
  ``SLURM_LOCALID``; rank 0's host is the first of ``SLURM_STEP_NODELIST`` / ``SLURM_NODELIST`` and
  the port is derived from ``SLURM_JOB_ID``, so every task computes the same pair on its own. A batch
  shell (no ``srun`` step) is not a rank group: it runs as a single process;
* ``mpirun`` (Open MPI): ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``; rank 0's address and a free port of its host are broadcast over MPI
  (mpi4py) unless ``MASTER_ADDR`` / ``MASTER_PORT`` are given;
* none of them: a single process (world of one) on a free local port.

``MASTER_ADDR`` / ``MASTER_PORT`` set by hand always win, so a cluster with unusual networking can pin
them.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000
"""srun ranks listen on ``SLURM_PORT_BASE + SLURM_JOB_ID % SLURM_PORT_SPAN``: two jobs sharing a
node differ unless their ids collide modulo the span (then set ``MASTER_PORT``)."""


class LaunchEnvError(RuntimeError):
    """The environment names a launcher but lacks a variable that launcher should have set."""


@dataclass(frozen=True)
class LaunchEnv:
    """This process's place in the job, as the launcher described it."""

    launcher: str
    """"torch" (deepspeed launcher / torchrun / anything setting RANK), "slurm", "openmpi", "single"."""
    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: Optional[int]
    """None only for a single process: any free port will do."""

    def export(self, environ: dict = os.environ) -> None:
        """Write the torch.distributed variables (``env://`` rendezvous) into ``environ``."""
        environ.update(RANK=str(self.rank), LOCAL_RANK=str(self.local_rank),
                       WORLD_SIZE=str(self.world_size), MASTER_ADDR=self.master_addr)
        environ["MASTER_PORT"] = str(self.master_port if self.master_port is not None
                                     else free_port())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _given_port(env: Mapping[str, str]) -> Optional[int]:
    return int(env["MASTER_PORT"]) if "MASTER_PORT" in env else None


def _int(env: Mapping[str, str], name: str, launcher: str) -> int:
    value = env.get(name)
    if value is None:
        raise LaunchEnvError(f"{launcher} environment without {name}: start the ranks with the "
                             f"launcher itself (see launch/ and launch/slurm/), or set {name}")
    try:
        return int(value)
    except ValueError:
        raise LaunchEnvError(f"{name}={value!r} is not an integer") from None


_BRACKET = re.compile(r"\[([^\]]*)\]")


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compressed host list to names, in order: ``node[01-04,07]`` -> node01..node04, node07;
    ``a[1-2]-b[3,5],c`` -> a1-b3, a1-b5, a2-b3, a2-b5, c. Zero padding is kept."""
    hosts: list[str] = []
    for item in _split_top_level(hostlist):
        match = _BRACKET.search(item)
        if match is None:
            hosts.append(item)
            continue
        head, tail = item[:match.start()], item[match.end():]
        for value in _expand_ranges(match.group(1), hostlist):
            hosts.extend(head + value + rest for rest in expand_hostlist(tail) or [""])
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "[") - (char == "]")
        if depth < 0 or depth > 1:
            raise LaunchEnvError(f"malformed SLURM host list {text!r} (unbalanced brackets)")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise LaunchEnvError(f"malformed SLURM host list {text!r} (unbalanced brackets)")
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_ranges(ranges: str, whole: str) -> list[str]:
    values = []
    for part in ranges.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise LaunchEnvError(f"malformed range {part!r} in SLURM host list {whole!r}")
        if not dash:
            values.append(low)
            continue
        width = len(low)
        values.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return values


def _slurm_size_name(env: Mapping[str, str]) -> str:
    return "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"


def _slurm(env: Mapping[str, str]) -> LaunchEnv:
    world = _int(env, _slurm_size_name(env), "SLURM")
    addr = env.get("MASTER_ADDR")
    if addr is None:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") \
            or env.get("SLURM_NODELIST")
        if not nodelist:
            raise LaunchEnvError("SLURM environment without SLURM_STEP_NODELIST or SLURM_NODELIST "
                                 "(rank 0's host): set MASTER_ADDR")
        addr = expand_hostlist(nodelist)[0]
    port = env.get("MASTER_PORT")
    if port is None:
        port = SLURM_PORT_BASE + _int(env, "SLURM_JOB_ID", "SLURM") % SLURM_PORT_SPAN
    return LaunchEnv("slurm", _int(env, "SLURM_PROCID", "SLURM"), _int(env, "SLURM_LOCALID", "SLURM"),
                     world, addr, int(port))


def mpi_rendezvous() -> tuple[str, int]:
    """Rank 0's host address and a free port on it, broadcast to every MPI rank."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    pair = None
    if comm.Get_rank() == 0:
        pair = (socket.gethostbyname(socket.gethostname()), free_port())
    return comm.bcast(pair, root=0)


def _openmpi(env: Mapping[str, str], rendezvous: Callable[[], tuple[str, int]]) -> LaunchEnv:
    rank = _int(env, "OMPI_COMM_WORLD_RANK", "Open MPI")
    world = _int(env, "OMPI_COMM_WORLD_SIZE", "Open MPI")
    local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", "Open MPI")
    addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if addr is None or port is None:
        found_addr, found_port = rendezvous()  # collective: every rank takes this branch alike
        addr, port = addr or found_addr, port or found_port
    return LaunchEnv("openmpi", rank, local, world, addr, int(port))


def launcher_of(env: Mapping[str, str] = os.environ) -> str:
    """Which launcher started this process, by the variables it set (the order of the module doc)."""
    if "RANK" in env or "WORLD_SIZE" in env:
        return "torch"
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:  # an srun step, not the batch shell
        return "slurm"
    if "OMPI_COMM_WORLD_RANK" in env:
        return "openmpi"
    return "single"


def announced_world_size(env: Mapping[str, str] = os.environ) -> int:
    """The number of ranks the launcher announces (1 without one), read on its own so that a
    configuration is checked against it before any rendezvous."""
    launcher = launcher_of(env)
    name = {"torch": "WORLD_SIZE", "slurm": _slurm_size_name(env),
            "openmpi": "OMPI_COMM_WORLD_SIZE"}.get(launcher)
    return _int(env, name, launcher) if name else 1


def discover(env: Mapping[str, str] = os.environ,
             rendezvous: Callable[[], tuple[str, int]] = mpi_rendezvous) -> LaunchEnv:
    """This process's rank, local rank, world size and rank 0's address from ``env``.

    Raises ``LaunchEnvError`` naming the missing variable when a launcher's variables are incomplete.
    ``rendezvous`` finds rank 0's address under ``mpirun`` (injectable for tests).
    """
    launcher = launcher_of(env)
    if launcher == "torch":
        what = "RANK/WORLD_SIZE (torchrun or deepspeed)"
        world, rank = _int(env, "WORLD_SIZE", what), _int(env, "RANK", what)
        if world > 1 and "MASTER_PORT" not in env:
            raise LaunchEnvError("WORLD_SIZE > 1 but MASTER_PORT is not set: start the ranks with "
                                 "deepspeed, torchrun, srun or mpirun (launch/), or set MASTER_PORT")
        return LaunchEnv("torch", rank, int(env.get("LOCAL_RANK", 0)), world,
                         env.get("MASTER_ADDR", "127.0.0.1"), _given_port(env))
    if launcher == "slurm":
        return _slurm(env)
    if launcher == "openmpi":
        return _openmpi(env, rendezvous)
    return LaunchEnv("single", 0, 0, 1, env.get("MASTER_ADDR", "127.0.0.1"), _given_port(env))

