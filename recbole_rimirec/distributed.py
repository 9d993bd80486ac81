"""Multi-process runs on the engine RecBole uses (``torch.distributed``): gloo on CPU, NCCL on GPU.

RecBole 1.2.1's own path hard-codes NCCL, breaks on CPU device ids, weights metrics by the batch
tuple's length and lets ``DistributedSampler``'s padding duplicate users in evaluation. The
plugin's Config and trainers fix these (``Config._init_device``, ``SafeCheckpointMixin``):
evaluation gathers every rank's per-user rows and drops the padding, so N processes report
exactly the single-process metrics for the same weights. Training shards the batches and
averages gradients (DDP); the sampler's padding repeats a few rows per epoch.

Launch on one machine with ``nproc`` processes; on several machines, start one launch per
machine with the same ``world_size``, ``ip`` and ``port`` and ``offset`` = the number of
processes on the machines before it.
"""

from __future__ import annotations

import json
import os
import tempfile

DIST_KEYS = ("local_rank", "world_size", "nproc", "ip", "port", "offset")


def spawn(
    target: str, nproc: int, world_size: int = -1, ip: str = "localhost", port: int = 5678, offset: int = 0, **kwargs
) -> dict | None:
    """Runs ``quick_start.<target>`` (``run`` or ``evaluate_saved``) in ``nproc`` local processes.

    Args:
        target: ``run`` or ``evaluate_saved``.
        nproc: processes on this machine.
        world_size: processes on all machines (default ``nproc``).
        ip: address of the rank-0 machine.
        port: its free TCP port.
        offset: global rank of this machine's first process.
        **kwargs: the target's arguments.

    Returns:
        dict | None: the global rank 0's result (None on machines without it).
    """
    import torch.multiprocessing as mp

    settings = {
        "world_size": nproc if world_size in (-1, None) else world_size,
        "ip": ip,
        "port": port,
        "nproc": nproc,
        "offset": offset,
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_worker, args=(target, kwargs, settings, out), nprocs=nproc, join=True)
        if not os.path.exists(out):
            return None
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def _worker(rank: int, target: str, kwargs: dict, settings: dict, out: str) -> None:
    import torch.distributed as dist

    from recbole_rimirec import quick_start

    settings = {**settings, "local_rank": rank}
    key = "config_dict" if target == "run" else "overrides"
    kwargs = {**kwargs, key: {**(kwargs.get(key) or {}), **settings}}
    try:
        result = getattr(quick_start, target)(**kwargs)
        if rank + settings["offset"] == 0:
            with open(out, "w", encoding="utf-8") as f:
                json.dump(result, f)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
