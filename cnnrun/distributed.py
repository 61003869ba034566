"""Which process of a distributed run this is, before and after Lightning sets up the process group.

Lightning's DDP re-runs the command once per extra device (``LOCAL_RANK``/``NODE_RANK`` set), SLURM starts one
task per device (``SLURM_PROCID``), torchrun sets ``RANK``. Only the process whose every rank variable is 0 (or
absent) writes the run folder's files; Lightning itself keeps logs, checkpoints and the progress bar to rank 0.
Light module.
"""
from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_rank_zero() -> bool:
    return all(os.environ.get(name, "0") in ("0", "") for name in RANK_VARIABLES)


def launched_externally() -> bool:
    """True when a cluster manager started one process per device (SLURM with several tasks, torchrun)."""
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def shard_indices(order, rank: int, world: int, *, pad: bool):
    """This rank's share of ``order`` (a 1-D index tensor): every ``world``-th element from ``rank``. With ``pad``
    (training) the order is first extended by wrapping around so that every rank gets the same number of samples
    (equal step counts keep the ranks' collective operations in step); without it (evaluation) each sample is
    seen exactly once overall."""
    if world <= 1:
        return order
    if pad and len(order) % world:
        extra = world - len(order) % world
        order = order.repeat(-(-(len(order) + extra) // len(order)))[:len(order) + extra]
    return order[rank::world]
