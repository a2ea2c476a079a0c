"""Rank discovery from the environments the launchers really set (copied from srun, mpirun,
torchrun and the deepspeed launcher on this machine), and SLURM host-list expansion."""

import pytest

from plmscale.parallel.launch_env import (SLURM_PORT_BASE, LaunchEnv, LaunchEnvError,
                                          announced_world_size, discover, expand_hostlist)


def _no_rendezvous():
    raise AssertionError("MPI rendezvous called although MASTER_ADDR/MASTER_PORT were given")


@pytest.mark.parametrize("hostlist, hosts", [
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("n1", ["n1"]),
    ("n[1-2]", ["n1", "n2"]),
    ("gpu[8-11],cpu3", ["gpu8", "gpu9", "gpu10", "gpu11", "cpu3"]),
    ("rack[1-2]-node[09-10]", ["rack1-node09", "rack1-node10", "rack2-node09", "rack2-node10"]),
    ("a[007]", ["a007"]),
])
def test_expand_hostlist(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("bad", ["node[01-04", "node01-04]", "node[a-b]", "node[1-]"])
def test_malformed_hostlist_is_named(bad):
    with pytest.raises(LaunchEnvError, match="host list"):
        expand_hostlist(bad)


# srun -N 2 -n 4 (two tasks per node), task 3 on the second node; no MASTER_* given.
SRUN_MULTI_NODE = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3",
                   "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS": "4",
                   "SLURM_STEP_NUM_TASKS": "4", "SLURM_JOB_NODELIST": "gpu[07-08]",
                   "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_NODELIST": "gpu[07-08]"}


@pytest.mark.parametrize("env, expected", [
    pytest.param(SRUN_MULTI_NODE,
                 LaunchEnv("slurm", 3, 1, 4, "gpu07", SLURM_PORT_BASE + 4242), id="srun-2-nodes"),
    pytest.param({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "1", "SLURM_PROCID": "1",
                  "SLURM_LOCALID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2",
                  "SLURM_STEP_NODELIST": "n1", "SLURM_NODELIST": "n1"},
                 LaunchEnv("slurm", 1, 1, 2, "n1", SLURM_PORT_BASE + 7), id="srun-1-node"),
    pytest.param(dict(SRUN_MULTI_NODE, MASTER_ADDR="10.0.0.5", MASTER_PORT="6000"),
                 LaunchEnv("slurm", 3, 1, 4, "10.0.0.5", 6000), id="srun-pinned-master"),
    # A step narrower than the allocation (srun -n 2 inside sbatch -n 4): the step's counts win.
    pytest.param(dict(SRUN_MULTI_NODE, SLURM_PROCID="1", SLURM_STEP_NUM_TASKS="2",
                      SLURM_STEP_NODELIST="gpu08"),
                 LaunchEnv("slurm", 1, 1, 2, "gpu08", SLURM_PORT_BASE + 4242), id="srun-sub-step"),
    # torchrun / deepspeed started by srun one task per node: their variables win over SLURM's.
    pytest.param(dict(SRUN_MULTI_NODE, RANK="5", LOCAL_RANK="1", WORLD_SIZE="8",
                      MASTER_ADDR="gpu07", MASTER_PORT="29500", TORCHELASTIC_RUN_ID="4242"),
                 LaunchEnv("torch", 5, 1, 8, "gpu07", 29500), id="srun-torchrun-per-node"),
    pytest.param({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "none", "GROUP_RANK": "0"},
                 LaunchEnv("torch", 1, 1, 2, "127.0.0.1", 29500), id="torchrun"),
    pytest.param({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": "29500", "CROSS_RANK": "0", "CROSS_SIZE": "1", "LOCAL_SIZE": "2"},
                 LaunchEnv("torch", 0, 0, 2, "127.0.0.1", 29500), id="deepspeed-launcher"),
    pytest.param({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
                  "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
                  "MASTER_ADDR": "head", "MASTER_PORT": "7000"},
                 LaunchEnv("openmpi", 1, 1, 2, "head", 7000), id="mpirun-pinned-master"),
    # A batch shell (sbatch -n 2, no srun step) is one process, not rank 0 of 2.
    pytest.param({"SLURM_JOB_ID": "9", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                  "SLURM_NTASKS": "2", "SLURM_NODELIST": "n[1-2]"},
                 LaunchEnv("single", 0, 0, 1, "127.0.0.1", None), id="sbatch-shell"),
    pytest.param({}, LaunchEnv("single", 0, 0, 1, "127.0.0.1", None), id="plain-python"),
])
def test_discover(env, expected):
    assert discover(env, rendezvous=_no_rendezvous) == expected
    assert announced_world_size(env) == expected.world_size  # what the config is checked against


def test_open_mpi_without_master_asks_rank_zero():
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    found = discover(env, rendezvous=lambda: ("node-a", 41234))
    assert found == LaunchEnv("openmpi", 3, 1, 4, "node-a", 41234)


@pytest.mark.parametrize("env, missing", [
    ({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}, "MASTER_PORT"),
    ({"RANK": "1"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "MASTER_PORT": "1"}, "RANK"),
    ({k: v for k, v in SRUN_MULTI_NODE.items() if k != "SLURM_LOCALID"}, "SLURM_LOCALID"),
    ({k: v for k, v in SRUN_MULTI_NODE.items() if "NODELIST" not in k}, "SLURM_STEP_NODELIST"),
    ({k: v for k, v in SRUN_MULTI_NODE.items() if k != "SLURM_JOB_ID"}, "SLURM_JOB_ID"),
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_LOCAL_RANK": "0"}, "OMPI_COMM_WORLD_SIZE"),
    ({"RANK": "x", "WORLD_SIZE": "2", "MASTER_PORT": "1"}, "RANK='x'"),
])
def test_missing_variable_is_named(env, missing):
    with pytest.raises(LaunchEnvError, match=missing):
        discover(env, rendezvous=_no_rendezvous)


def test_export_writes_torch_variables():
    environ = {}
    LaunchEnv("slurm", 3, 1, 4, "gpu07", 24242).export(environ)
    assert environ == {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4",
                       "MASTER_ADDR": "gpu07", "MASTER_PORT": "24242"}
    single = {}
    LaunchEnv("single", 0, 0, 1, "127.0.0.1", None).export(single)
    assert 0 < int(single["MASTER_PORT"]) < 65536  # a free port, found when asked
