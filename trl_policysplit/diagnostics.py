"""Why DiPO may not act on a run, in words a user can act on (the trainer warns once per reason).

DiPO reallocates rewards only in groups whose completions are all correct or all wrong, with a perplexity threshold
fitted on (perplexity, correct) pairs; "correct" means a total weighted reward above ``correct_reward_threshold``.
With continuous rewards (length penalties, reward models) groups are rarely uniform and "correct" is only "above the
threshold", so DiPO silently trains like GRPO. These pure functions say so from the rewards TRL gathered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .functional import weighted_total_reward

# Reasons the trainer warns about, once each.
NON_BINARY = "non_binary"
NO_VALID_SPLIT = "no_valid_split"


def non_binary_reward_functions(
    rewards_per_func: torch.Tensor, weights: torch.Tensor, names: Sequence[str]
) -> dict[str, int]:
    """Weighted reward functions that gave more than two distinct values in one batch: ``{name: distinct values}``.

    A function of 0/1 rewards (or any two values) is binary-like; a weighted sum of binary-like functions is fine too,
    because each function is checked on its own. Unscored (NaN) rewards and functions of weight 0 are left out.
    """
    found = {}
    for index, name in enumerate(names):
        if float(weights[index]) == 0.0:
            continue
        column = rewards_per_func[:, index]
        distinct = torch.unique(column[~torch.isnan(column)]).numel()
        if distinct > 2:
            found[name] = distinct
    return found


def no_split_reason(rewards: torch.Tensor, threshold: float) -> str:
    """Why no perplexity threshold separates correct from wrong completions, judged on the latest batch's totals."""
    scored = rewards[~torch.isnan(rewards)]
    if scored.numel() == 0:
        return "no completion of the latest batch was scored"
    low, high = scored.min().item(), scored.max().item()
    span = f"total rewards of the latest batch from {low:g} to {high:g}"
    if high <= threshold:
        return f"no completion's total reward is above correct_reward_threshold={threshold:g} ({span})"
    if low > threshold:
        return f"every completion's total reward is above correct_reward_threshold={threshold:g} ({span})"
    return (
        "perplexity does not separate correct from wrong completions (no threshold has both sides more than half pure)"
    )


def dipo_warnings(
    rewards_per_func: torch.Tensor,
    weights: torch.Tensor,
    names: Sequence[str],
    threshold: float,
    batches_without_split: int,
    warn_after_batches: int,
) -> dict[str, str]:
    """Messages for every reason DiPO cannot act now: ``{reason: message}`` (empty when it can).

    ``rewards_per_func``: (completions, functions) of one generation batch, all processes; ``batches_without_split``:
    consecutive generation batches without a valid threshold, the latest included.
    """
    messages = {}
    non_binary = non_binary_reward_functions(rewards_per_func, weights, names)
    if non_binary:
        listed = ", ".join(f"{name} ({count} distinct values in one batch)" for name, count in non_binary.items())
        messages[NON_BINARY] = (
            f"DiPO: rewards are not binary: {listed}. DiPO counts a completion as correct when its total reward is "
            f"above correct_reward_threshold={threshold:g} and reallocates only in groups whose rewards are all "
            "equal, which continuous rewards rarely give: it may never act, and the loss is then GRPO's. Set "
            "correct_reward_threshold to the reward that means success, or use 0/1 rewards."
        )
    if batches_without_split >= warn_after_batches:
        total = weighted_total_reward(rewards_per_func, weights)
        messages[NO_VALID_SPLIT] = (
            f"DiPO: no valid perplexity threshold for {batches_without_split} generation batches in a row, so nothing "
            f"was reallocated and the loss is GRPO's: {no_split_reason(total, threshold)}. Check "
            "correct_reward_threshold against your rewards (dipo/valid_split stays 0 while this lasts)."
        )
    return messages
