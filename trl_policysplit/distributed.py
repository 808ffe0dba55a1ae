"""Cross-process helpers: TRL lets one question's group span processes, so the trainers run the functional core's
group steps on rows gathered from every process (`gather_padded`), then each process keeps its own rows
(`local_rows`). Every process computes the same result, so they take the same decisions."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """``(world_size, rank)``, or ``(1, 0)`` when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_padded(tensor: torch.Tensor, pad_value: float = 0) -> torch.Tensor:
    """Concatenate every process's rows in rank order, padding dim 1 to the widest process first.

    Every process must hold the same number of rows (TRL's batches guarantee it). Bool tensors come back bool.
    """
    size, _ = world()
    if size == 1:
        return tensor
    dtype = tensor.dtype
    work = tensor.long() if dtype == torch.bool else tensor
    if work.dim() > 1:
        width = torch.tensor([work.size(1)], device=work.device)
        dist.all_reduce(width, op=dist.ReduceOp.MAX)
        work = F.pad(work, (0, int(width.item()) - work.size(1)), value=pad_value)
    parts = [torch.empty_like(work) for _ in range(size)]
    dist.all_gather(parts, work.contiguous())
    gathered = torch.cat(parts)
    return gathered.bool() if dtype == torch.bool else gathered


def local_rows(gathered: torch.Tensor, num_rows: int, width: int | None = None) -> torch.Tensor:
    """This process's rows of a gathered tensor, cut back to its own width."""
    _, rank = world()
    part = gathered[rank * num_rows : (rank + 1) * num_rows]
    return part if width is None else part[:, :width]
