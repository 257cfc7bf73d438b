"""Where the tasks of a SLURM job step meet (rlkit.distributed.slurm_rendezvous), from the variables SLURM
sets; tests/slurm/test_slurm_ranks.py runs it on the real local cluster (1 node x 2 tasks, 2 nodes x 1)."""
from __future__ import annotations

import pytest

from rlkit.distributed import first_host, master_port, node_address, slurm_rendezvous

# what slurmstepd exported to task 1 of `srun -N2 --ntasks-per-node=1` on the local 2-node cluster
TASK1 = {"SLURM_JOB_ID": "5", "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1", "SLURM_NTASKS": "2",
         "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "vm,vm-2",
         "SLURM_JOB_NODELIST": "vm,vm-2", "SLURM_STEP_ID": "0"}


@pytest.mark.parametrize(("nodelist", "first"), [("vm,vm-2", "vm"), ("gpu[003-005,9],cpu1", "gpu003"),
                                                 ("node7", "node7"), ("a[1,3]", "a1"), ("x-1", "x-1")])
def test_first_host_of_a_hostlist(nodelist, first):
    assert first_host(nodelist) == first


def test_ports_differ_between_consecutive_jobs_and_stay_in_range():
    ports = [master_port(str(j)) for j in range(1000, 1100)]
    assert len(set(ports)) == 100 and all(20000 <= p < 60000 for p in ports)
    assert master_port("5") == master_port("5")  # every task derives the same


def test_rendezvous_of_a_two_node_step():
    rv = slurm_rendezvous(TASK1)
    assert (rv.rank, rv.world, rv.local_rank, rv.local_world) == (1, 2, 0, 1)
    assert rv.master_port == master_port("5", "0")
    env = rv.env()
    assert env["RANK"] == "1" and env["WORLD_SIZE"] == "2" and env["MASTER_PORT"] == str(rv.master_port)


def test_explicit_master_address_and_port_win():
    rv = slurm_rendezvous({**TASK1, "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29500"})
    assert (rv.master_addr, rv.master_port) == ("10.0.0.7", 29500)


def test_a_resolvable_node_name_is_used_as_is():
    assert node_address("localhost") == "localhost"
