"""Pure, vectorized tensor math of the methods in this package (ALGORITHMS.md §5).

Conventions: rows are grouped contiguously (rows ``g*G .. g*G+G-1`` form group ``g``); per-token tensors
are ``(N, T)`` with a 0/1 ``mask`` of valid completion tokens. No function here holds state, talks to other
processes or loops in Python over rows or tokens, so trainers, tests and users can call them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

NORMALIZATIONS = ("zscore", "range", "none")
_EPS = 1e-6


def _check_groups(num_rows: int, group_size: int) -> int:
    if group_size < 1 or num_rows % group_size != 0:
        raise ValueError(f"{num_rows} rows cannot be split into groups of {group_size}.")
    return num_rows // group_size


def group_token_quantile(values: torch.Tensor, mask: torch.Tensor, group_size: int, q: float) -> torch.Tensor:
    """Per-group ``q``-quantile of the valid tokens, with the linear interpolation of ``torch.quantile``.

    Returns one value per group, ``(N // group_size,)``; a group without valid tokens gets ``nan``.
    Groups hold different numbers of valid tokens, so invalid tokens are sorted to the end and each group
    interpolates at its own position ``q * (count - 1)``.
    """
    num_groups = _check_groups(values.size(0), group_size)
    flat = values.reshape(num_groups, -1).float()
    valid = mask.reshape(num_groups, -1).bool()
    ordered = flat.masked_fill(~valid, float("inf")).sort(dim=1).values
    count = valid.sum(dim=1)
    position = q * (count - 1).clamp(min=0).to(flat.dtype)
    lower = position.floor().long()
    upper = position.ceil().long()
    low_value = ordered.gather(1, lower.unsqueeze(1)).squeeze(1)
    high_value = ordered.gather(1, upper.unsqueeze(1)).squeeze(1)
    weight = position - lower.to(flat.dtype)
    result = low_value + weight * (high_value - low_value)
    return result.masked_fill(count == 0, float("nan"))


def policy_split_internal_reward(
    surprisal_self: torch.Tensor,
    surprisal_other: torch.Tensor,
    mask: torch.Tensor,
    group_size: int,
    alpha: float,
    normalization: str = "zscore",
    low_quantile: float = 0.0,
) -> torch.Tensor:
    """Normalized dual-mode entropy term of Policy Split (ALGORITHMS.md §1.4), for rows of ONE context.

    ``x_t = alpha * surprisal_self_t + (1 - alpha) * surprisal_other_t``: for rows under the high-entropy
    context ``self`` is the HE surprisal and this is ``b``; under the normal context it is ``c``. The value is
    normalized over all valid tokens of each group (``zscore`` with the unbiased std, ``range``, or ``none``);
    a group with at most one valid token uses mean 0 and scale 1. Tokens whose raw value is below the group's
    ``low_quantile`` get 0, and so do invalid tokens. The sign and the eta coefficients are the caller's.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    num_groups = _check_groups(surprisal_self.size(0), group_size)
    valid = mask.bool()
    raw = alpha * surprisal_self.float() + (1.0 - alpha) * surprisal_other.float()
    raw = raw.masked_fill(~valid, 0.0)

    if normalization == "none":
        normalized = raw
    else:
        grouped = raw.reshape(num_groups, -1)
        grouped_valid = valid.reshape(num_groups, -1)
        count = grouped_valid.sum(dim=1).to(raw.dtype)
        mean = grouped.sum(dim=1) / count.clamp(min=1.0)
        if normalization == "zscore":
            squared = ((grouped - mean.unsqueeze(1)) ** 2).masked_fill(~grouped_valid, 0.0)
            scale = (squared.sum(dim=1) / (count - 1.0).clamp(min=1.0)).sqrt()
        else:
            largest = grouped.masked_fill(~grouped_valid, float("-inf")).amax(dim=1)
            smallest = grouped.masked_fill(~grouped_valid, float("inf")).amin(dim=1)
            scale = largest - smallest
        degenerate = count <= 1
        mean = mean.masked_fill(degenerate, 0.0)
        scale = scale.masked_fill(degenerate, 1.0)
        mean_rows = mean.repeat_interleave(group_size).unsqueeze(1)
        scale_rows = scale.repeat_interleave(group_size).unsqueeze(1)
        normalized = (raw - mean_rows) / (scale_rows + _EPS)

    if low_quantile > 0.0:
        threshold = group_token_quantile(raw, mask, group_size, low_quantile)
        normalized = normalized.masked_fill(raw < threshold.repeat_interleave(group_size).unsqueeze(1), 0.0)
    return normalized.masked_fill(~valid, 0.0)


def clamp_by_advantage(internal_reward: torch.Tensor, advantages: torch.Tensor, kappa: float) -> torch.Tensor:
    """Clamp a per-token term to ``[-|A|/kappa, |A|/kappa]`` so it cannot outweigh the outcome signal.

    With ``kappa > 1`` the term can never flip the sign of ``A``, and it vanishes where ``A == 0``.
    ``kappa <= 0`` returns the term unchanged. ``advantages`` is ``(N,)`` or ``(N, 1)``.
    """
    if kappa <= 0:
        return internal_reward
    bound = advantages.reshape(-1, 1).abs().to(internal_reward.dtype) / kappa
    return torch.maximum(torch.minimum(internal_reward, bound), -bound)


def uniform_reward_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(N,)`` bool: True for rows whose group's rewards are all equal, ignoring NaN (unscored) rewards."""
    num_groups = _check_groups(rewards.size(0), group_size)
    grouped = rewards.reshape(num_groups, group_size)
    scored = ~torch.isnan(grouped)
    largest = grouped.masked_fill(~scored, float("-inf")).amax(dim=1)
    smallest = grouped.masked_fill(~scored, float("inf")).amin(dim=1)
    uniform = (largest <= smallest) | ~scored.any(dim=1)
    return uniform.repeat_interleave(group_size)


def distinct_correct_per_group(
    completion_ids: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor, group_size: int
) -> torch.Tensor:
    """Number of distinct correct completions (as token sequences) in each group, ``(N // group_size,)``."""
    num_groups = _check_groups(completion_ids.size(0), group_size)
    group_index = torch.arange(completion_ids.size(0), device=completion_ids.device) // group_size
    tokens = completion_ids.long().masked_fill(~mask.bool(), -1)
    keys = torch.cat([group_index.unsqueeze(1), tokens], dim=1)[correct.bool()]
    if keys.numel() == 0:
        return torch.zeros(num_groups, dtype=torch.long, device=completion_ids.device)
    unique_keys = torch.unique(keys, dim=0)
    return torch.bincount(unique_keys[:, 0], minlength=num_groups)


def dual_mode_internal_rewards(
    surprisal_own: torch.Tensor,
    surprisal_cross: torch.Tensor,
    mask: torch.Tensor,
    is_high_entropy: torch.Tensor,
    group_size: int,
    alpha: float,
    eta_high: float,
    eta_normal: float,
    normalization: str = "zscore",
    low_quantile: float = 0.0,
    share_rollouts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unclamped internal rewards of every generated completion under its own and the other context.

    Rows are the generated completions of whole questions, ``group_size = 2n`` per question, the first ``n``
    of each from the normal mode (``is_high_entropy`` False). ``surprisal_own`` is taken under the context
    the completion was generated in, ``surprisal_cross`` under the other one. Returns ``(own, cross)``:
    the term for the row trained in its own context (Q1/Q2) and for its cross pair (Q3/Q4), ``eta_high * b~``
    under the high-entropy context and ``-eta_normal * c~`` under the normal one. With sharing, the normal
    group is Q1 u Q3 and the HE group Q2 u Q4 (2n rows each); without it, each mode's n rows are a group of
    their own and ``cross`` is None.
    """
    high = is_high_entropy.bool().unsqueeze(1)

    def _scaled(value: torch.Tensor) -> torch.Tensor:
        return torch.where(high, eta_high * value, -eta_normal * value)

    if not share_rollouts:
        if group_size % 2 != 0:
            raise ValueError(f"group_size must be even (n completions per mode), got {group_size}.")
        own = policy_split_internal_reward(
            surprisal_own, surprisal_cross, mask, group_size // 2, alpha, normalization, low_quantile
        )
        return _scaled(own), None

    surprisal_normal = torch.where(high, surprisal_cross, surprisal_own)
    surprisal_high = torch.where(high, surprisal_own, surprisal_cross)
    normal_context = policy_split_internal_reward(
        surprisal_normal, surprisal_high, mask, group_size, alpha, normalization, low_quantile
    )
    high_context = policy_split_internal_reward(
        surprisal_high, surprisal_normal, mask, group_size, alpha, normalization, low_quantile
    )
    own = torch.where(high, eta_high * high_context, -eta_normal * normal_context)
    cross = torch.where(high, -eta_normal * normal_context, eta_high * high_context)
    return own, cross


CROSS_IMPORTANCE_SAMPLING = ("none", "token_truncate", "sequence_truncate")


def cross_importance_weights(
    logps_sampled: torch.Tensor,
    logps_trained: torch.Tensor,
    mask: torch.Tensor,
    level: str = "token_truncate",
    cap: float = 2.0,
) -> torch.Tensor:
    """Truncated importance weights of completions trained under a context they were not sampled in, ``(N, T)``.

    ``logps_sampled`` are the completion's log-probs under the context that sampled it, ``logps_trained`` under the
    context its row is trained in (both from the sampling policy). ``token_truncate``: ``w_t = min(exp(trained_t -
    sampled_t), cap)``; ``sequence_truncate``: one weight per row, ``min(exp(sum_t (trained_t - sampled_t)), cap)``
    over its valid tokens, as TRL's vLLM correction of the same names. ``none``: 1. Invalid tokens get 1.
    """
    if level not in CROSS_IMPORTANCE_SAMPLING:
        raise ValueError(f"level must be one of {CROSS_IMPORTANCE_SAMPLING}, got {level!r}.")
    valid = mask.bool()
    if level == "none":
        return torch.ones_like(logps_trained, dtype=torch.float32)
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap}.")
    log_ratio = (logps_trained.float() - logps_sampled.float()).masked_fill(~valid, 0.0)
    if level == "sequence_truncate":
        log_ratio = log_ratio.sum(dim=1, keepdim=True).expand_as(log_ratio)
    weights = log_ratio.clamp(max=math.log(cap)).exp()
    return weights.masked_fill(~valid, 1.0)


def inter_mode_kl_penalty(
    surprisal_normal: torch.Tensor, surprisal_high: torch.Tensor, mask: torch.Tensor, coef: float
) -> torch.Tensor:
    """Per-token KL penalty of a high-entropy-context row against the normal mode, ``(N, T)``: ``-coef * (log p_HE -
    log p_normal) = -coef * (s_normal - s_HE)`` at each valid token, 0 elsewhere. As the KL-in-reward of RLHF with the
    normal mode as the reference: it pushes down tokens the HE mode prefers over the normal one, a restoring force
    that grows with the distance between the modes and needs no reference model."""
    if not coef >= 0:
        raise ValueError(f"coef must be >= 0, got {coef}.")
    penalty = -coef * (surprisal_normal.float() - surprisal_high.float())
    return penalty.masked_fill(~mask.bool(), 0.0)


def adapted_coefficient(
    coefficient: float,
    measured_kl: float,
    target_kl: float,
    rate: float = 1.0,
    maximum: float = math.inf,
    max_error: float = 0.2,
) -> float:
    """One step of an adaptive controller that holds a KL near ``target_kl`` by scaling the coefficient that drives it
    apart (Policy Split's ``eta_high``): PPO's adaptive KL controller (arXiv 1909.08593) with the sign turned around.

    ``error = clip(measured / target - 1, -max_error, max_error)``; the new coefficient is ``coefficient * (1 - rate *
    error)``, at most ``maximum``: a KL above target shrinks it, below target grows it. A NaN KL (no completion of the
    mode) leaves it unchanged.
    """
    if not target_kl > 0:
        raise ValueError(f"target_kl must be > 0, got {target_kl}.")
    if not 0 < rate * max_error < 1:
        raise ValueError(f"rate * max_error must be in (0, 1) to keep the coefficient positive: {rate * max_error}")
    if not math.isfinite(measured_kl):
        return coefficient
    error = min(max(measured_kl / target_kl - 1.0, -max_error), max_error)
    return min(coefficient * (1.0 - rate * error), maximum)


# ----------------------------------------------------------------------------------------------------------------
# Advantage rules: GRPO's group normalization and AsymGRPO (ALGORITHMS.md §2)

_TRL_STD_EPS = 1e-4  # GRPOTrainer adds this to the group std before dividing


def weighted_total_reward(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TRL's total reward over the last dim, ``sum_f w_f r_f`` with a missing (NaN) reward counting as nothing; NaN
    where every function left the completion unscored. ``(..., F)`` and ``(F,)`` -> ``(...)``."""
    weights = torch.as_tensor(weights, dtype=rewards_per_func.dtype, device=rewards_per_func.device)
    total = (rewards_per_func * weights).nansum(dim=-1)
    return total.masked_fill(torch.isnan(rewards_per_func).all(dim=-1), float("nan"))


def group_normalized_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """GRPO's advantage as TRL computes it: ``(r - mean_g) / (std_g + 1e-4)`` with the unbiased, NaN-aware std.

    ``scale=False`` only centres (TRL's ``scale_rewards="none"``). NaN (unscored) rewards are left out of the
    group statistics and get advantage 0.
    """
    num_groups = _check_groups(rewards.size(0), group_size)
    grouped = rewards.reshape(num_groups, group_size).float()
    scored = ~torch.isnan(grouped)
    count = scored.sum(dim=1, keepdim=True)
    mean = grouped.nansum(dim=1, keepdim=True) / count.clamp(min=1)
    centred = grouped - mean
    if scale:
        squared = centred.masked_fill(~scored, 0.0).square().sum(dim=1, keepdim=True)
        std = (squared / (count - 1).clamp(min=1)).sqrt()
        centred = centred / (std + _TRL_STD_EPS)
    return torch.nan_to_num(centred, nan=0.0).reshape(-1)


def asym_advantages(
    rewards: torch.Tensor,
    group_size: int,
    beta_pos: float = 0.9,
    beta_neg: float = 0.4,
    reward_range: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """AsymGRPO's advantage: ``((r' - mu) / mu) ** beta_pos`` above the group mean, ``-((mu - r') / (1 - mu))
    ** beta_neg`` below it, 0 at it, with ``r' = (r - lo) / (hi - lo)`` and ``mu`` the group mean of ``r'``.

    For 0/1 rewards and success rate ``p`` this is ``((1-p)/p) ** beta_pos`` and ``-(p/(1-p)) ** beta_neg``;
    ``beta_pos = beta_neg = 0.5`` is GRPO with the population std. NaN rewards are left out of ``mu`` and get
    0. A scored reward outside ``reward_range`` raises ``ValueError``. ``reward_range=None`` takes each group's own
    ``[min, max]`` as its range: the paper's formula for 0/1 rewards (a group with both values spans [0, 1]), and
    invariant to shifting and scaling the rewards, as GRPO's group normalization is.
    """
    num_groups = _check_groups(rewards.size(0), group_size)
    grouped = rewards.float().reshape(num_groups, group_size)
    scored = ~torch.isnan(grouped)
    if reward_range is None:
        low = grouped.masked_fill(~scored, math.inf).amin(dim=1, keepdim=True)
        high = grouped.masked_fill(~scored, -math.inf).amax(dim=1, keepdim=True)
        span = high - low
        # A group whose rewards (nearly) all agree has no signal: 0 everywhere, as the equal-reward rule below.
        unit = torch.where(span > _EPS, (grouped - low) / span.clamp(min=_EPS), grouped * 0.0)
    else:
        low, high = (float(v) for v in reward_range)
        if not high > low:
            raise ValueError(f"reward_range must be (low, high) with low < high, got {reward_range}.")
        unit = (grouped - low) / (high - low)
        outside = outside_reward_range(grouped, (low, high))
        if outside.any():
            value = grouped[outside][0].item()
            raise ValueError(f"reward {value} is outside reward_range {reward_range}.")
    unit = unit.clamp(0.0, 1.0)
    mean = unit.nansum(dim=1, keepdim=True) / scored.sum(dim=1, keepdim=True).clamp(min=1)
    gap = unit - mean
    above, below = gap > _EPS, gap < -_EPS  # NaN compares False: unscored rows get 0
    positive = (gap / mean.clamp(min=_EPS)).clamp(min=0.0).pow(beta_pos)
    negative = -((-gap) / (1.0 - mean).clamp(min=_EPS)).clamp(min=0.0).pow(beta_neg)
    advantages = torch.where(above, positive, torch.where(below, negative, torch.zeros_like(gap)))
    return advantages.reshape(-1)


# ----------------------------------------------------------------------------------------------------------------
# Perplexity-based reward allocation, DiPO (ALGORITHMS.md §3)


def sequence_perplexity(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``exp(mean surprisal)`` over each row's valid tokens, ``(N,)``; a row without valid tokens gets NaN."""
    valid = mask.to(logps.dtype)
    count = valid.sum(dim=1)
    mean_surprisal = -(logps.masked_fill(~mask.bool(), 0.0) * valid).sum(dim=1) / count.clamp(min=1)
    return mean_surprisal.float().exp().masked_fill(count == 0, float("nan"))


def perplexity_threshold(ppl: torch.Tensor, correct: torch.Tensor) -> tuple[float | None, bool]:
    """Perplexity threshold ``tau`` that best separates correct (below) from wrong (above) completions.

    Candidates are midpoints between consecutive distinct perplexities; ``tau`` minimizes the
    misclassification rate of "correct iff PPL < tau" (ties: the smallest ``tau``). The split is valid only
    when more than half of the completions below ``tau`` are correct and more than half above are wrong.
    NaN perplexities are ignored. Returns ``(None, False)`` with fewer than two distinct values.
    """
    known = ~torch.isnan(ppl)
    order = ppl[known].double().argsort()
    values = ppl[known].double()[order]
    labels = correct[known].bool()[order].long()
    total = values.numel()
    if total < 2:
        return None, False
    # Candidate k puts the k smallest values below the threshold; only cuts between distinct values count.
    cuts = torch.nonzero(values[1:] > values[:-1]).squeeze(1) + 1
    if cuts.numel() == 0:
        return None, False
    correct_before = torch.cat([labels.new_zeros(1), labels.cumsum(0)])
    below = cuts
    correct_below = correct_before[cuts]
    wrong_below = below - correct_below
    correct_above = correct_before[-1] - correct_below
    errors = wrong_below + correct_above  # integer counts: exact ties, argmin takes the first (smallest tau)
    best = int(torch.argmin(errors).item())
    cut = int(cuts[best].item())
    tau = float((values[cut - 1] + values[cut]) / 2)
    above = total - cut
    wrong_above = above - int(correct_above[best].item())
    valid = 2 * int(correct_below[best].item()) > cut and 2 * wrong_above > above
    return tau, valid


def reallocated_rewards(
    correct: torch.Tensor, ppl: torch.Tensor, group_size: int, tau: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """DiPO's reallocated rewards ``R_r`` for groups that are all wrong or all correct, and which rows are active.

    All wrong with group-mean PPL below ``tau`` (confidently wrong): the highest-PPL completion (first on ties)
    gets 1, the others 0. All correct with group-mean PPL above ``tau`` (uncertain correct): the highest-PPL
    completion gets 0, the others 1. Other groups, groups with a NaN perplexity and ``tau=None`` are inactive
    and keep ``R_r = correct``. Returns ``(rewards_r (N,) float, active (N,) bool)``.
    """
    num_groups = _check_groups(correct.size(0), group_size)
    hits = correct.bool().reshape(num_groups, group_size)
    if tau is None:
        return hits.float().reshape(-1), torch.zeros_like(hits).reshape(-1)
    grouped = ppl.float().reshape(num_groups, group_size)
    mean_ppl = grouped.mean(dim=1)  # NaN if any is NaN: then both comparisons are False
    up = ~hits.any(dim=1) & (mean_ppl < tau)
    down = hits.all(dim=1) & (mean_ppl > tau)
    highest = F.one_hot(grouped.argmax(dim=1), group_size).bool()
    flipped = torch.where(up.unsqueeze(1), highest, torch.where(down.unsqueeze(1), ~highest, hits))
    active = (up | down).repeat_interleave(group_size)  # a new tensor: callers may update it in place
    return flipped.float().reshape(-1), active


# ----------------------------------------------------------------------------------------------------------------
# Entropy-guided baselines (ALGORITHMS.md §4): Clip-Cov / KL-Cov (arXiv 2505.22617), entropy advantage (2506.14758)


def _token_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N,)``, ``(N, 1)`` or ``(N, T)`` advantages as ``(N, T)``."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    return advantages.to(like.dtype).expand_as(like)


def token_covariance(logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token ``(logp_t - mean logp) * (A_t - mean A)``, means over the valid tokens of the whole batch; 0 on
    invalid tokens. Its sum over tokens is (up to the count) the covariance that drives the entropy change."""
    valid = mask.bool()
    logps = logps.detach().float()
    token_adv = _token_advantages(advantages.detach().float(), logps)
    count = valid.sum().clamp(min=1)
    mean_logp = logps.masked_fill(~valid, 0.0).sum() / count
    mean_adv = token_adv.masked_fill(~valid, 0.0).sum() / count
    return ((logps - mean_logp) * (token_adv - mean_adv)).masked_fill(~valid, 0.0)


def _selection_size(mask: torch.Tensor, ratio: float) -> int:
    """``ratio`` of the valid tokens, at least one when there is any (as the reference implementation)."""
    valid = int(mask.bool().sum().item())
    return 0 if valid == 0 else max(int(ratio * valid), 1)


def clip_cov_mask(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ratio: float,
    lower: float,
    upper: float,
    eligible: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Clip-Cov's tokens: a uniformly random ``ratio`` fraction of the valid tokens (at least one), drawn among the
    (``eligible``) valid tokens whose covariance lies in ``(lower, upper)``; fewer if fewer qualify. ``(N, T)`` bool.
    The caller detaches their gradient."""
    covariance = token_covariance(logps, advantages, mask)
    candidates = mask.bool() & (covariance > lower) & (covariance < upper)
    if eligible is not None:
        candidates &= eligible.bool()
    count = min(_selection_size(mask, ratio), int(candidates.sum().item()))
    selected = torch.zeros_like(candidates)
    if count == 0:
        return selected
    scores = torch.rand(candidates.shape, generator=generator, device=generator.device if generator else None)
    scores = scores.to(candidates.device).masked_fill(~candidates, -1.0)
    chosen = scores.flatten().topk(count).indices
    return selected.flatten().index_fill(0, chosen, True).view_as(candidates)


def kl_cov_mask(logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """KL-Cov's tokens: the top ``ratio`` fraction of the valid tokens (at least one) by covariance. ``(N, T)`` bool.
    The caller adds ``coef * |logp - old_logp|`` to their loss."""
    count = _selection_size(mask, ratio)
    selected = torch.zeros_like(mask, dtype=torch.bool)
    if count == 0:
        return selected
    covariance = token_covariance(logps, advantages, mask).masked_fill(~mask.bool(), float("-inf"))
    chosen = covariance.flatten().topk(count).indices
    return selected.flatten().index_fill(0, chosen, True).view_as(selected)


def entropy_advantage_bonus(
    entropies: torch.Tensor, advantages: torch.Tensor, alpha: float, kappa: float
) -> torch.Tensor:
    """Entropy-based advantage term ``min(alpha * H_t, |A_t| / kappa)`` with ``H`` detached, ``(N, T)``.

    It is non-negative and, for ``kappa > 1``, never flips the sign of ``A`` once added; it vanishes where ``A = 0``.
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be > 0, got {kappa}.")
    entropies = entropies.detach().float()
    token_adv = _token_advantages(advantages.detach().float(), entropies)
    return torch.minimum(alpha * entropies, token_adv.abs() / kappa)


def mean_of_sequence_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over rows of each row's mean over its valid tokens, a 0-dim tensor: every sequence weighs the same.

    Rows without a valid token are left out; ``nan`` when no row has one. Values at invalid tokens are ignored.
    The token-weighted mean, ``(values * mask).sum() / mask.sum()``, instead weighs a sequence by its length.
    """
    valid = mask.bool()
    counts = valid.sum(dim=1)
    sums = values.float().masked_fill(~valid, 0.0).sum(dim=1)
    has_tokens = counts > 0
    return (sums[has_tokens] / counts[has_tokens]).mean()  # the mean of no rows is nan


# ----------------------------------------------------------------------------------------------------------------
# Steps (ALGORITHMS.md §5.1): one function per step of a method, from the batch's tensors and the config's values to
# ``(result, metrics)``. Steps on whole question groups take every process's rows (the trainers gather them) and
# return float metrics; steps on one loss micro-batch return ``TokenSums`` (``[sum, count]`` over its valid tokens),
# which the trainer sums over processes before dividing. Steps with nothing to log return their result alone.

Metrics = dict[str, float]
TokenSums = dict[str, torch.Tensor]


def token_sums(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[sum of values at valid tokens, number of valid tokens]`` as a float tensor (a ``TokenSums`` entry)."""
    valid = mask.bool()
    return torch.stack([values.detach().float().masked_fill(~valid, 0.0).sum(), valid.sum().float()])


def _mean(values: torch.Tensor) -> float:
    """Mean as a float, NaN for no values (TRL's `log` leaves NaN out of its average)."""
    return values.float().mean().item() if values.numel() else math.nan


def _fraction(count: torch.Tensor, total: torch.Tensor) -> float:
    total = float(total)
    return float(count) / total if total > 0 else math.nan


def outside_reward_range(rewards: torch.Tensor, reward_range: tuple[float, float]) -> torch.Tensor:
    """``(N,)`` bool: scored rewards outside ``reward_range`` (by more than float noise); NaN is never outside."""
    low, high = (float(value) for value in reward_range)
    tolerance = _EPS * max(1.0, high - low)
    return ~torch.isnan(rewards) & ((rewards < low - tolerance) | (rewards > high + tolerance))


def grpo_advantages(
    rewards_per_func: torch.Tensor,
    weights: torch.Tensor,
    group_size: int,
    scale_rewards: str = "group",
    aggregation: str = "sum_then_normalize",
) -> torch.Tensor:
    """GRPO's advantage as `GRPOTrainer` computes it, for a group size of the caller's choice (Policy Split's per-mode
    ablation groups each mode's ``n`` rows): ``scale_rewards`` ``group``/``batch``/``none`` and TRL's two
    ``multi_objective_aggregation`` rules; a completion no function scored gets 0. ``(N, F)`` -> ``(N,)``."""
    _check_groups(rewards_per_func.size(0), group_size)
    if aggregation == "sum_then_normalize":
        rewards = weighted_total_reward(rewards_per_func.float(), weights)
        if scale_rewards != "batch":
            return group_normalized_advantages(rewards, group_size, scale=scale_rewards != "none")
        centred = rewards - torch.nanmean(rewards.reshape(-1, group_size), dim=1).repeat_interleave(group_size)
        return torch.nan_to_num(centred / (_nanstd(rewards) + _TRL_STD_EPS), nan=0.0)
    if aggregation == "normalize_then_sum":
        grouped = rewards_per_func.float().reshape(-1, group_size, rewards_per_func.size(1))
        mean = torch.nanmean(grouped, dim=1, keepdim=True)
        std = _nanstd(grouped, dim=1) if group_size > 1 else torch.zeros_like(mean)
        normalized = ((grouped - mean) / (std + _TRL_STD_EPS)).reshape(rewards_per_func.shape)
        # A function's NaN z-score (fewer than two scored values in the group) counts as 0; only a completion no
        # function scored is left out.
        weights = torch.as_tensor(weights, dtype=normalized.dtype, device=normalized.device)
        rewards = (normalized * weights).nansum(dim=1)
        rewards = rewards.masked_fill(torch.isnan(rewards_per_func).all(dim=1), float("nan"))
        return torch.nan_to_num((rewards - torch.nanmean(rewards)) / (_nanstd(rewards) + _TRL_STD_EPS), nan=0.0)
    raise ValueError(f"aggregation must be 'sum_then_normalize' or 'normalize_then_sum', got {aggregation!r}.")


def _nanstd(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased standard deviation ignoring NaN (NaN with fewer than two values), keeping ``dim``."""
    if dim is None:
        values, dim = values.reshape(-1), 0
    count = (~torch.isnan(values)).sum(dim=dim, keepdim=True)
    squared = (values - torch.nanmean(values, dim=dim, keepdim=True)).square()
    variance = torch.nanmean(squared, dim=dim, keepdim=True) * count / (count - 1)
    return variance.masked_fill(count <= 1, float("nan")).sqrt()


def advantage_metrics(
    advantages: torch.Tensor, rewards: torch.Tensor, correct: torch.Tensor, group_size: int
) -> Metrics:
    """Means of the positive and negative advantages, and the share of groups solved by none or by all of their
    scored completions."""
    scored = ~torch.isnan(rewards).reshape(-1, group_size)
    hits = correct.bool().reshape(-1, group_size)
    has_scored = scored.any(dim=1)
    return {
        "advantage/pos_mean": _mean(advantages[advantages > 0]),
        "advantage/neg_mean": _mean(advantages[advantages < 0]),
        "advantage/frac_groups_solved_none": _mean(has_scored & ~hits.any(dim=1)),
        "advantage/frac_groups_solved_all": _mean(has_scored & (hits | ~scored).all(dim=1)),
    }


def dipo_step(
    rewards: torch.Tensor,
    correct: torch.Tensor,
    ppl: torch.Tensor,
    group_size: int,
    threshold: float | None,
    valid_split: bool,
    ppl_alpha: float,
    asymmetric: bool = False,
    beta_pos: float = 0.9,
    beta_neg: float = 0.4,
    scale: bool = True,
) -> tuple[torch.Tensor, Metrics]:
    """DiPO's reallocation (§3): ``ppl_alpha`` times the advantage rule (AsymGRPO's, or GRPO's group normalization)
    on the reallocated rewards, in groups that have no signal of their own (every completion scored and all rewards
    equal) and that the threshold ``tau`` marks; 0 elsewhere. ``threshold``/``valid_split`` come from the perplexity
    queue (`perplexity_threshold`). Returns the term to add to the advantages, ``(N,)``, and DiPO's metrics."""
    scored = ~torch.isnan(rewards)
    reallocated, active = reallocated_rewards(correct, ppl, group_size, threshold if valid_split else None)
    fully_scored = scored.reshape(-1, group_size).all(dim=1).repeat_interleave(group_size)
    active = active & uniform_reward_groups(rewards, group_size) & fully_scored
    if asymmetric:
        rule = asym_advantages(reallocated, group_size, beta_pos, beta_neg)
    else:
        rule = group_normalized_advantages(reallocated, group_size, scale=scale)
    group_active = active.reshape(-1, group_size)[:, 0]
    group_correct = correct.bool().reshape(-1, group_size)[:, 0]
    metrics = {
        "dipo/threshold": threshold if threshold is not None else math.nan,
        "dipo/valid_split": float(valid_split),
        "dipo/frac_groups_up": _mean(group_active & ~group_correct),
        "dipo/frac_groups_down": _mean(group_active & group_correct),
    }
    return (ppl_alpha * rule * active).to(rewards.dtype), metrics


# --- Policy Split (§1)


def policy_split_modes(num_rows: int, group_size: int, first_row: int = 0) -> torch.Tensor:
    """``(num_rows,)`` bool, True for the high-entropy rows: the second half of each question's ``group_size`` rows,
    counting from row ``first_row`` of the global batch (a process's first row)."""
    return (first_row + torch.arange(num_rows)) % group_size >= group_size // 2


class CrossPairInputs(NamedTuple):
    """Every completion behind its own prompt (rows ``0..N-1``) and behind the other mode's (rows ``N..2N-1``),
    prompts left-padded to one width: the model inputs of Policy Split's scoring forward and of its doubled batch."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def cross_pair_inputs(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    cross_prompt_ids: torch.Tensor,
    cross_prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    pad_token_id: int,
) -> CrossPairInputs:
    """Policy Split's cross inputs (§1.2): the same completion token ids under both prompts, in one batch."""
    width = max(prompt_ids.size(1), cross_prompt_ids.size(1))

    def left_padded(tensor: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(tensor, (width - tensor.size(1), 0), value=value)

    both_prompts = torch.cat([left_padded(prompt_ids, pad_token_id), left_padded(cross_prompt_ids, pad_token_id)])
    both_masks = torch.cat([left_padded(prompt_mask, 0), left_padded(cross_prompt_mask, 0)])
    input_ids = torch.cat([both_prompts, torch.cat([completion_ids, completion_ids])], dim=1)
    attention_mask = torch.cat([both_masks, torch.cat([completion_mask, completion_mask])], dim=1)
    return CrossPairInputs(both_prompts, both_masks, input_ids, attention_mask)


def kl_high_entropy_to_normal(
    own_logps: torch.Tensor, cross_logps: torch.Tensor, mask: torch.Tensor, is_high_entropy: torch.Tensor
) -> float:
    """KL(HE -> normal) of a batch as the paper measures it: per HE completion the mean over its tokens of ``log p_HE -
    log p_normal`` (own minus cross log-probs), then the mean over HE completions; NaN without any."""
    high = is_high_entropy.bool()
    return mean_of_sequence_means((own_logps.float() - cross_logps.float())[high], mask[high]).item()


@dataclass(frozen=True)
class DualModeSettings:
    """The config values Policy Split's advantage step reads (`PolicySplitConfig`'s fields of the same names, with
    the ``eta_high`` the drift guard adapted)."""

    alpha: float
    eta_high: float
    eta_normal: float
    kappa: float
    bonus_normalization: str = "zscore"
    bonus_low_quantile: float = 0.0
    share_rollouts: bool = True
    entropy_estimator: str = "surprisal"
    mode_kl_coef: float = 0.0
    bonus_uniform_reward_groups_only: bool = False
    cross_importance_sampling: str = "none"
    cross_importance_cap: float = 2.0

    @classmethod
    def from_config(cls, config: object, eta_high: float) -> DualModeSettings:
        values = {name: getattr(config, name) for name in cls.__dataclass_fields__ if name != "eta_high"}
        return cls(eta_high=eta_high, **values)

    @property
    def reads_cross_surprisals(self) -> bool:
        """Whether the advantages depend on the completions' surprisals at all: an internal reward (a non-zero eta),
        the inter-mode penalty or the cross rows' importance weights. Without any, every row's advantage is its base
        advantage, and `policy_split_step` needs no cross log-probs."""
        return bool(self.eta_high or self.eta_normal or self.mode_kl_coef or self.cross_importance_sampling != "none")


class DualModeAdvantages(NamedTuple):
    """Per-token advantages of the generated rows under their own context and, with shared rollouts, of their cross
    pairs (None without); ``cross_weights`` are the cross rows' importance weights already folded in (None if off)."""

    own: torch.Tensor
    cross: torch.Tensor | None
    cross_weights: torch.Tensor | None


def _clamp_sums(raw: torch.Tensor, clamped: torch.Tensor, mask: torch.Tensor, high_context: torch.Tensor):
    """``[[clamped, tokens] normal context, [clamped, tokens] HE context]`` for one set of rows."""
    valid = mask.bool()
    active = (raw != clamped) & valid
    high = high_context.bool().unsqueeze(1)
    return torch.stack(
        [
            torch.stack([(active & ~high).sum(), (valid & ~high).sum()]),
            torch.stack([(active & high).sum(), (valid & high).sum()]),
        ]
    ).float()


def policy_split_step(
    base_advantages: torch.Tensor,
    rewards: torch.Tensor,
    own_logps: torch.Tensor,
    cross_logps: torch.Tensor | None,
    mask: torch.Tensor,
    is_high_entropy: torch.Tensor,
    group_size: int,
    settings: DualModeSettings,
    own_entropies: torch.Tensor | None = None,
    cross_entropies: torch.Tensor | None = None,
) -> tuple[DualModeAdvantages, Metrics]:
    """Policy Split's advantages (§1.4, §1.6) on whole question groups (``group_size = 2n`` rows each, the normal
    mode's first): the internal reward of every row under its own and the other context, zeroed for unscored
    completions (and outside uniform-reward groups if set), clamped by ``|A|/kappa``, plus the inter-mode KL penalty
    on HE-context rows (outside the clamp), added to the base advantage; the cross rows' importance weights, if set,
    scale their advantages. ``*_logps`` are the sampling policy's log-probs of each completion under its own and the
    other context; ``*_entropies`` replace their surprisals as the estimate with ``entropy_estimator="entropy"``.
    Metrics: the share of clamped tokens per context and overall, and the cross rows' mean weight per context.
    ``cross_logps`` may be None when the settings read no surprisal (`DualModeSettings.reads_cross_surprisals`): the
    result is the same as with any log-probs, the base advantage on every token."""
    high = is_high_entropy.bool()
    advantage_group = group_size if settings.share_rollouts else group_size // 2
    if cross_logps is None:
        if settings.reads_cross_surprisals:
            raise ValueError(
                "policy_split_step needs cross_logps: an eta, mode_kl_coef or cross_importance_sampling is set."
            )
        return _base_advantages_only(base_advantages, mask, high, settings.share_rollouts)
    if settings.entropy_estimator == "entropy":
        if own_entropies is None or cross_entropies is None:
            raise ValueError('entropy_estimator="entropy" needs own_entropies and cross_entropies.')
        estimate_own, estimate_cross = own_entropies, cross_entropies
    else:
        estimate_own, estimate_cross = -own_logps, -cross_logps
    own_reward, cross_reward = dual_mode_internal_rewards(
        estimate_own.float(),
        estimate_cross.float(),
        mask,
        high,
        group_size,
        alpha=settings.alpha,
        eta_high=settings.eta_high,
        eta_normal=settings.eta_normal,
        normalization=settings.bonus_normalization,
        low_quantile=settings.bonus_low_quantile,
        share_rollouts=settings.share_rollouts,
    )
    # Unscored completions carry no signal (TRL's NaN semantics); optionally keep the term in uniform groups only.
    keep = ~torch.isnan(rewards)
    if settings.bonus_uniform_reward_groups_only:
        keep &= uniform_reward_groups(rewards, advantage_group)
    keep = keep.unsqueeze(1)
    s_own, s_cross, high_rows = -own_logps.float(), -cross_logps.float(), high.unsqueeze(1)
    # The restoring force on HE-context rows: own rows of HE completions (Q2), cross rows of normal ones (Q4).
    own_penalty = inter_mode_kl_penalty(s_cross, s_own, mask, settings.mode_kl_coef) * high_rows * keep
    base = base_advantages.reshape(-1, 1)
    own_reward = own_reward * keep
    own_clamped = clamp_by_advantage(own_reward, base, settings.kappa)
    own = base + own_clamped + own_penalty.to(own_clamped.dtype)
    clamp_sums = _clamp_sums(own_reward, own_clamped, mask, high)
    cross = weights = None
    metrics: Metrics = {}
    if settings.share_rollouts:
        cross_penalty = inter_mode_kl_penalty(s_own, s_cross, mask, settings.mode_kl_coef) * ~high_rows * keep
        cross_reward = cross_reward * keep
        cross_clamped = clamp_by_advantage(cross_reward, base, settings.kappa)
        clamp_sums = clamp_sums + _clamp_sums(cross_reward, cross_clamped, mask, ~high)
        cross = base + cross_clamped + cross_penalty.to(cross_clamped.dtype)
        if settings.cross_importance_sampling != "none":
            # Off-policy correction folded into the advantages: every TRL loss is linear in a non-negative per-token
            # scale of the advantage, and TRL reads its own IS slot only with vLLM.
            weights = cross_importance_weights(
                own_logps, cross_logps, mask, settings.cross_importance_sampling, settings.cross_importance_cap
            )
            cross = cross * weights.to(cross.dtype)
            metrics.update(_cross_weight_metrics(weights, mask, high, settings.cross_importance_cap))
    for index, name in enumerate(("normal", "high_entropy")):
        metrics[f"policy_split/{name}/clamp_frac"] = _fraction(*clamp_sums[index])
    metrics["policy_split/clamp_frac"] = _fraction(*clamp_sums.sum(dim=0))
    return DualModeAdvantages(own, cross, weights), metrics


def _base_advantages_only(
    base_advantages: torch.Tensor, mask: torch.Tensor, high: torch.Tensor, share_rollouts: bool
) -> tuple[DualModeAdvantages, Metrics]:
    """`policy_split_step` when no surprisal enters the advantages: the base advantage on every token of every row
    (exactly what the full step gives then: it adds zero terms), and no token clamped."""
    own = base_advantages.reshape(-1, 1) + torch.zeros_like(mask, dtype=base_advantages.dtype)
    cross = own.clone() if share_rollouts else None
    zeros = torch.zeros_like(mask, dtype=torch.float32)
    clamp_sums = _clamp_sums(zeros, zeros, mask, high)  # each context's tokens, none clamped
    if share_rollouts:
        clamp_sums = clamp_sums + _clamp_sums(zeros, zeros, mask, ~high)
    metrics: Metrics = {}
    for index, name in enumerate(("normal", "high_entropy")):
        metrics[f"policy_split/{name}/clamp_frac"] = _fraction(*clamp_sums[index])
    metrics["policy_split/clamp_frac"] = _fraction(*clamp_sums.sum(dim=0))
    return DualModeAdvantages(own, cross, None), metrics


def _cross_weight_metrics(weights: torch.Tensor, mask: torch.Tensor, is_high: torch.Tensor, cap: float) -> Metrics:
    """Mean importance weight of the cross rows' tokens per training context, and the share at the cap. A cross row
    is trained under the other mode's prompt: normal completions under the HE one (Q4), and back."""
    valid = mask.bool()
    capped = (weights >= cap * (1 - 1e-6)) & valid
    metrics: Metrics = {}
    for name, completions in (("high_entropy", ~is_high), ("normal", is_high)):
        rows = valid & completions.unsqueeze(1)
        count = rows.sum()
        metrics[f"policy_split/cross_is_weight/{name}_context"] = _fraction((weights * rows).sum(), count)
        metrics[f"policy_split/cross_is_capped_frac/{name}_context"] = _fraction((capped & rows).sum(), count)
    return metrics


def policy_split_mode_metrics(
    rewards: torch.Tensor,
    completion_ids: torch.Tensor,
    mask: torch.Tensor,
    is_high_entropy: torch.Tensor,
    own_logps: torch.Tensor,
    cross_logps: torch.Tensor | None,
    group_size: int,
    correct_threshold: float,
    share_rollouts: bool = True,
) -> Metrics:
    """Per-mode metrics of §1.5 on whole question groups: completions, trained sequences, reward, length,
    surprisal, distinct correct completions per question, and the inter-mode KL twice: ``kl_<from>_to_<to>`` as the
    paper averages it (per completion over its tokens, then over the mode's completions) and ``..._token``
    token-weighted (the mode's token sum over its token count). Without ``cross_logps``, no KL (`mode_kl_sums`
    gives it from the loss forward then)."""
    mask = mask.float()
    high = is_high_entropy.bool()
    correct = rewards > correct_threshold  # NaN compares False
    lengths = mask.sum(dim=1)
    surprisal_own = -own_logps.float()
    metrics: Metrics = {}
    for name in ("normal", "high_entropy"):
        rows = high if name == "high_entropy" else ~high
        tokens = lengths[rows].sum()
        prefix = f"policy_split/{name}"
        metrics[f"{prefix}/completions"] = float(rows.sum())
        metrics[f"{prefix}/train_sequences"] = float(rows.sum()) * (2 if share_rollouts else 1)
        metrics[f"{prefix}/reward"] = torch.nanmean(rewards[rows]).item()
        metrics[f"{prefix}/completion_length"] = _mean(lengths[rows])
        metrics[f"{prefix}/surprisal"] = _fraction((surprisal_own * mask)[rows].sum(), tokens)
        distinct = distinct_correct_per_group(completion_ids, mask, correct & rows, group_size)
        metrics[f"{prefix}/distinct_correct"] = _mean(distinct)
        if cross_logps is not None:
            cross_minus_own = (own_logps.float() - cross_logps.float()) * mask
            kl_name = _KL_NAMES[name]
            metrics[f"policy_split/{kl_name}"] = mean_of_sequence_means(cross_minus_own[rows], mask[rows]).item()
            metrics[f"policy_split/{kl_name}_token"] = _fraction(cross_minus_own[rows].sum(), tokens)
    return metrics


_KL_NAMES = {"normal": "kl_normal_to_high_entropy", "high_entropy": "kl_high_entropy_to_normal"}


def mode_kl_shares(mask: torch.Tensor, is_high_entropy: torch.Tensor) -> torch.Tensor:
    """``(N, 2)``: each completion's weight in its mode's KL means of §1.5, ``1 / |S|`` (per completion; 0 for a
    completion without a valid token) and ``1 / tokens`` (token-weighted), over whole groups (every process's rows);
    NaN for a mode without any. `mode_kl_parts` weighs a loss micro-batch's cross rows with them."""
    valid = mask.bool()
    lengths = valid.sum(dim=1)
    high = is_high_entropy.bool()
    shares = torch.zeros(mask.size(0), 2)
    for rows in (~high, high):
        completions, tokens = (rows & (lengths > 0)).sum(), lengths[rows].sum()
        shares[rows, 0] = (lengths[rows] > 0).float() / completions if completions > 0 else math.nan
        shares[rows, 1] = 1.0 / tokens if tokens > 0 else math.nan
    return shares.to(mask.device)


def mode_kl_parts(
    sampled_logps: torch.Tensor,
    logps: torch.Tensor,
    mask: torch.Tensor,
    context: torch.Tensor,
    is_cross: torch.Tensor,
    shares: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One loss micro-batch's part of the inter-mode KL of §1.5 (0-dim tensors), for when no scoring forward gave the
    cross log-probs: summed over every micro-batch of a generation batch and every process, the parts are the KLs
    `policy_split_mode_metrics` gives. On-policy the loss forward's ``logps`` of a cross row are its completion's
    log-probs under the other context at the sampling policy; ``sampled_logps`` are that completion's under the
    context it was sampled in; ``shares`` are `mode_kl_shares` of the row's completion. A cross row trained under the
    HE context holds a normal completion (``kl_normal_to_high_entropy``), and back."""
    valid = mask.bool()
    difference = (sampled_logps.float() - logps.detach().float()).masked_fill(~valid, 0.0)
    row_sums = difference.sum(dim=1)
    row_means = row_sums / valid.sum(dim=1).clamp(min=1)
    parts: dict[str, torch.Tensor] = {}
    for name, completion_context in (("normal", 1), ("high_entropy", 0)):
        rows = is_cross.bool() & (context == completion_context)
        kl_name = _KL_NAMES[name]
        parts[f"policy_split/{kl_name}"] = (row_means * shares[:, 0].to(row_means))[rows].sum()
        parts[f"policy_split/{kl_name}_token"] = (row_sums * shares[:, 1].to(row_sums))[rows].sum()
    return parts


def mode_entropy_sums(
    entropies: torch.Tensor, mask: torch.Tensor, context: torch.Tensor, is_cross: torch.Tensor
) -> TokenSums:
    """Per-mode entropy of a loss micro-batch over each mode's own rollouts (cross rows left out), as ``TokenSums``."""
    own = mask.bool() & ~is_cross.bool().unsqueeze(1)
    high = context.bool().unsqueeze(1)
    return {
        "policy_split/normal/entropy": token_sums(entropies, own & ~high),
        "policy_split/high_entropy/entropy": token_sums(entropies, own & high),
    }


# --- Entropy-guided baselines on one loss micro-batch (§4)


def entropy_advantage_step(
    advantages: torch.Tensor, entropies: torch.Tensor, mask: torch.Tensor, alpha: float, kappa: float
) -> tuple[torch.Tensor, TokenSums]:
    """The entropy advantage (arXiv 2506.14758): ``A_t + min(alpha * H_t, |A_t| / kappa)``, ``(N, T)`` in the
    advantages' dtype."""
    bonus = entropy_advantage_bonus(entropies, advantages, alpha, kappa)
    token_adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    return token_adv + bonus.to(token_adv.dtype), {"entropy_advantage/mean_bonus": token_sums(bonus, mask)}


def clip_cov_step(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ratio: float,
    lower: float,
    upper: float,
    epsilon_low: float,
    epsilon_high: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, TokenSums]:
    """Clip-Cov (arXiv 2505.22617): the log-probs the loss uses, with the gradient of `clip_cov_mask`'s tokens
    detached; tokens PPO's clip already cuts are not drawn (the reference implementation draws among the others)."""
    ratios = torch.exp(logps.detach() - old_logps)
    token_adv = _token_advantages(advantages, ratios)
    clipped = (ratios > 1 + epsilon_high) & (token_adv > 0)
    clipped |= (ratios < 1 - epsilon_low) & (token_adv < 0)
    selected = clip_cov_mask(logps, advantages, mask, ratio, lower, upper, ~clipped, generator)
    shaped = torch.where(selected, logps.detach(), logps)
    return shaped, {
        "clip_cov/frac_tokens": token_sums(selected.float(), mask),
        "clip_cov/mean_covariance": token_sums(token_covariance(logps, advantages, mask), mask),
    }


def kl_cov_step(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ratio: float,
    coef: float,
) -> tuple[torch.Tensor, TokenSums]:
    """KL-Cov (arXiv 2505.22617): ``coef * |logp - old_logp|`` on `kl_cov_mask`'s tokens, averaged over the
    micro-batch's valid tokens as the reference implementation's token-mean loss (a 0-dim tensor with gradient, to add
    to the loss). It is 0 on a rollout's first update (``logp == old_logp``)."""
    selected = kl_cov_mask(logps, advantages, mask, ratio)
    penalty = coef * (logps - old_logps).abs() * selected
    valid = mask.to(penalty.dtype)
    return (penalty * valid).sum() / valid.sum().clamp(min=1), {
        "kl_cov/penalty": token_sums(penalty, mask),
        "kl_cov/frac_tokens": token_sums(selected.float(), mask),
        "kl_cov/mean_covariance": token_sums(token_covariance(logps, advantages, mask), mask),
    }
