"""Cross-process helpers: TRL lets one question's group span processes, so group statistics are taken
over rows gathered from every process, then each process keeps its own rows."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .functional import dual_mode_internal_rewards


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


class GatheredRows(NamedTuple):
    """Tensors of all processes, rows in global order (whole question groups)."""

    surprisal_own: torch.Tensor
    surprisal_cross: torch.Tensor
    mask: torch.Tensor
    is_high_entropy: torch.Tensor


def dual_mode_internal_rewards_across_processes(
    surprisal_own: torch.Tensor,
    surprisal_cross: torch.Tensor,
    mask: torch.Tensor,
    is_high_entropy: torch.Tensor,
    group_size: int,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None, GatheredRows]:
    """[`dual_mode_internal_rewards`] on the global batch, returning this process's rows.

    Equals the single-process result whatever the split of a group across processes. Also returns the
    gathered inputs so callers can compute global metrics without gathering again.
    """
    rows, width = surprisal_own.shape
    gathered = GatheredRows(
        gather_padded(surprisal_own.float()),
        gather_padded(surprisal_cross.float()),
        gather_padded(mask.long()),
        gather_padded(is_high_entropy.bool()),
    )
    own, cross = dual_mode_internal_rewards(*gathered, group_size, **kwargs)
    own = local_rows(own, rows, width)
    cross = None if cross is None else local_rows(cross, rows, width)
    return own, cross, gathered
