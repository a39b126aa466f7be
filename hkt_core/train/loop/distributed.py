"""torch.distributed glue: process group from torchrun's environment, reductions, rank-0 duties.

Launch with ``torchrun --nproc_per_node=N -m hkt_core.cli.main train ...`` or ``hkt train ... --nproc
N`` (which starts torchrun for you). gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed as dist


@attrs.frozen
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    #: this process created the group and must destroy it
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def close_world(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (float64 stats travel as they are; gloo supports them)."""
    if not world.distributed:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_flag(world: World, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (used to stop together on a NaN)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_text(world: World, text: str) -> str:
    """Rank 0's string on every rank (as bytes in a tensor: no pickle)."""
    if not world.distributed:
        return text
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
    length = torch.tensor([data.numel()], dtype=torch.int64)
    dist.broadcast(length, 0)
    buf = data if world.main else torch.zeros(int(length.item()), dtype=torch.uint8)
    dist.broadcast(buf, 0)
    return bytes(buf.tolist()).decode("utf-8")


def raise_together(world: World, failure: BaseException | None) -> None:
    """Raise rank 0's ``failure`` (if any) on every rank.

    Rank 0 re-raises its own exception; the others raise one of the same framework error class
    (:mod:`hkt_core.errors`) with the same message, received as text (no pickle).
    """
    if not world.distributed:
        if failure is not None:
            raise failure
        return
    text = broadcast_text(world, "" if failure is None else f"{type(failure).__name__}\n{failure}")
    if world.main:
        if failure is not None:
            raise failure
        return
    if text:
        from ... import errors

        kind, _, message = text.partition("\n")
        cls = getattr(errors, kind, None)
        raise (cls if isinstance(cls, type) and issubclass(cls, errors.HKTError) else errors.HKTError)(message)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def sync_buffers(world: World, module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart on per-rank batches), so
    that all shards are evaluated with the network rank 0 saves."""
    if not world.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, 0)
