"""Log-probs of the sampled tokens, taken while transformers' `generate` runs, so no forward has to compute them again.

Policy Split needs the surprisal of each generated completion under its own prompt, DiPO its perplexity: both are the
model's log-probs of the sampled tokens, which the sampler's forward passes already computed. A forward hook on the
model reads each decoding step's logits (the model's own: before temperature, top-p, top-k or any other logits
processor), divides them by the training temperature as TRL's loss does, and keeps one row of log-probs per step
until the next step reveals which token was sampled. Memory: one ``(batch, vocab)`` tensor at a time, never the whole
completion's logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SampledTokenLogps:
    """Context manager that records, during ``model.generate``, the log-prob of every sampled token.

    ``model`` must be the module whose forward `generate` calls (the base model under PEFT). After the context,
    [`SampledTokenLogps.per_row`] returns one list per generated row, or ``None`` when the generation could not be
    followed step by step (e.g. assisted decoding, several tokens per step): callers then run a forward instead.
    """

    def __init__(self, model: nn.Module, temperature: float) -> None:
        self.model = model
        self.temperature = temperature
        self._steps: list[torch.Tensor] = []  # log-prob of the token sampled at step t, for every row
        self._pending: torch.Tensor | None = None  # log-softmax of the latest step, its token not yet known
        self._followed = True
        self._handle: Any = None

    def __enter__(self) -> SampledTokenLogps:
        self._steps, self._pending, self._followed = [], None, True
        self._handle = self.model.register_forward_hook(self._record, with_kwargs=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
        self._handle = None

    def _record(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        logits = getattr(output, "logits", None)
        if input_ids is None or logits is None:
            self._followed = False
            return
        if self._pending is not None:
            # The token fed now is the one sampled from the pending step's distribution.
            if input_ids.size(1) != 1 or input_ids.size(0) != self._pending.size(0):
                self._followed = False
            else:
                self._steps.append(self._pending.gather(1, input_ids.to(self._pending.device)).squeeze(1))
        scaled = logits[:, -1, :].float() / self.temperature
        self._pending = scaled - scaled.logsumexp(dim=-1, keepdim=True)

    def per_row(self, completion_ids: list[list[int]]) -> list[list[float]] | None:
        """Log-probs of each row's completion tokens (rows as `generate` returned them, cut after EOS)."""
        pending, steps, self._pending, self._steps = self._pending, self._steps, None, []
        num_steps = len(steps) + (pending is not None)
        longest = max((len(ids) for ids in completion_ids), default=0)
        if not self._followed or pending is None or longest != num_steps or pending.size(0) != len(completion_ids):
            return None
        table = torch.stack(steps, dim=1) if steps else pending.new_zeros(pending.size(0), 0)
        rows = []
        for row, ids in enumerate(completion_ids):
            values = table[row, : len(ids)].tolist()
            if len(ids) == num_steps:  # the last step's token never went back through the model
                values.append(pending[row, ids[-1]].item())
            rows.append(values)
        return rows
