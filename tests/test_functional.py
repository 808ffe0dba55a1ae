"""The functional core against values computed by hand in the tests."""

from __future__ import annotations

import math

import pytest
import torch

from trl_policysplit.functional import (
    clamp_by_advantage,
    distinct_correct_per_group,
    dual_mode_internal_rewards,
    group_token_quantile,
    mean_of_sequence_means,
    policy_split_internal_reward,
    uniform_reward_groups,
)

EPS = 1e-6
# One group of 2 rows: raw values 0.75 * self + 0.25 * other = [[1.5, 2.0, 2.5], [3.0, pad, pad]].
SELF = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
OTHER = torch.tensor([[3.0, 2.0, 1.0], [0.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
RAW = [1.5, 2.0, 2.5, 3.0]


def _expected(values: list[float], scale: float, mean: float) -> torch.Tensor:
    normalized = [(v - mean) / (scale + EPS) for v in values]
    return torch.tensor([[normalized[0], normalized[1], normalized[2]], [normalized[3], 0.0, 0.0]])


def test_zscore_uses_unbiased_std_over_the_group_tokens_and_zeroes_padding():
    mean = sum(RAW) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in RAW) / 3)
    result = policy_split_internal_reward(SELF, OTHER, MASK, group_size=2, alpha=0.75)
    torch.testing.assert_close(result, _expected(RAW, std, mean))


def test_range_normalization_divides_by_max_minus_min():
    result = policy_split_internal_reward(SELF, OTHER, MASK, group_size=2, alpha=0.75, normalization="range")
    torch.testing.assert_close(result, _expected(RAW, 3.0 - 1.5, sum(RAW) / 4))


def test_no_normalization_returns_the_raw_mix():
    result = policy_split_internal_reward(SELF, OTHER, MASK, group_size=2, alpha=0.75, normalization="none")
    torch.testing.assert_close(result, torch.tensor([[1.5, 2.0, 2.5], [3.0, 0.0, 0.0]]))


def test_alpha_one_ignores_the_other_mode_and_alpha_zero_uses_only_it():
    only_self = policy_split_internal_reward(SELF, OTHER, MASK, 2, alpha=1.0, normalization="none")
    only_other = policy_split_internal_reward(SELF, OTHER, MASK, 2, alpha=0.0, normalization="none")
    torch.testing.assert_close(only_self, SELF * MASK)
    torch.testing.assert_close(only_other, OTHER * MASK)


def test_groups_are_normalized_separately():
    two_groups_self = torch.cat([SELF, SELF + 10.0])
    two_groups_other = torch.cat([OTHER, OTHER + 10.0])
    result = policy_split_internal_reward(two_groups_self, two_groups_other, torch.cat([MASK, MASK]), 2, alpha=0.75)
    # Shifting a whole group leaves its z-scores unchanged.
    torch.testing.assert_close(result[:2], result[2:])


def test_group_with_one_valid_token_uses_mean_zero_and_scale_one():
    mask = torch.tensor([[0, 1, 0], [0, 0, 0]])
    result = policy_split_internal_reward(SELF, OTHER, mask, group_size=2, alpha=0.75)
    expected = torch.zeros(2, 3)
    expected[0, 1] = 2.0 / (1.0 + EPS)
    torch.testing.assert_close(result, expected)
    empty = policy_split_internal_reward(SELF, OTHER, torch.zeros(2, 3), group_size=2, alpha=0.75)
    assert torch.equal(empty, torch.zeros(2, 3))


def test_all_equal_values_normalize_to_zero():
    values = torch.full((2, 3), 4.0)
    result = policy_split_internal_reward(values, values, torch.ones(2, 3), group_size=2, alpha=0.5)
    assert torch.equal(result, torch.zeros(2, 3))


def test_low_quantile_zeroes_tokens_below_the_group_quantile_of_raw_values():
    # Linear quantile at 0.5 of [1.5, 2.0, 2.5, 3.0] is 2.25: the tokens 1.5 and 2.0 are dropped.
    result = policy_split_internal_reward(SELF, OTHER, MASK, 2, alpha=0.75, normalization="none", low_quantile=0.5)
    torch.testing.assert_close(result, torch.tensor([[0.0, 0.0, 2.5], [3.0, 0.0, 0.0]]))


def test_group_token_quantile_matches_torch_quantile_with_uneven_counts():
    values = torch.tensor([[5.0, 1.0, 7.0], [2.0, 0.0, 0.0], [4.0, 4.0, 8.0], [1.0, 9.0, 3.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 0, 0], [0, 0, 0]])
    result = group_token_quantile(values, mask, group_size=2, q=0.3)
    torch.testing.assert_close(result[0], torch.quantile(torch.tensor([5.0, 1.0, 7.0, 2.0]), 0.3))
    torch.testing.assert_close(result[1], torch.tensor(4.0))  # a single valid token is its own quantile
    assert torch.isnan(group_token_quantile(values, torch.zeros(4, 3), 2, 0.3)).all()


def test_unknown_normalization_and_bad_group_size_are_rejected():
    with pytest.raises(ValueError, match="normalization"):
        policy_split_internal_reward(SELF, OTHER, MASK, 2, alpha=0.5, normalization="minmax")
    with pytest.raises(ValueError, match="groups of 3"):
        policy_split_internal_reward(SELF, OTHER, MASK, 3, alpha=0.5)


def test_clamp_bounds_by_absolute_advantage_over_kappa():
    term = torch.tensor([[3.0, -3.0, 0.1], [5.0, -5.0, 0.0]])
    advantages = torch.tensor([-2.0, 0.0])
    result = clamp_by_advantage(term, advantages, kappa=4.0)
    torch.testing.assert_close(result, torch.tensor([[0.5, -0.5, 0.1], [0.0, 0.0, 0.0]]))


def test_clamp_with_kappa_zero_is_the_identity():
    term = torch.tensor([[3.0, -3.0]])
    assert torch.equal(clamp_by_advantage(term, torch.tensor([0.0]), kappa=0.0), term)


def test_clamp_with_kappa_above_one_never_flips_the_advantage_sign():
    generator = torch.Generator().manual_seed(0)
    term = torch.randn(64, 16, generator=generator) * 10
    advantages = torch.randn(64, generator=generator)
    shaped = advantages.unsqueeze(1) + clamp_by_advantage(term, advantages, kappa=1.01)
    assert torch.all(torch.sign(shaped) == torch.sign(advantages).unsqueeze(1))


def test_uniform_reward_groups_ignores_nan():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, float("nan"), 0.0, float("nan"), float("nan")])
    expected = torch.tensor([True, True, False, False, True, True, True, True])
    assert torch.equal(uniform_reward_groups(rewards, group_size=2), expected)


def test_distinct_correct_counts_unique_token_sequences_ignoring_padding():
    ids = torch.tensor([[5, 6, 0], [5, 6, 7], [5, 6, 9], [1, 2, 3], [4, 4, 4], [4, 4, 4]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]])
    correct = torch.tensor([True, True, True, False, True, True])
    # Group 0: three rows equal once padding is ignored; group 1: one wrong, two identical correct rows.
    assert distinct_correct_per_group(ids, mask, correct, group_size=3).tolist() == [1, 1]
    assert distinct_correct_per_group(ids, mask, torch.zeros(6, dtype=torch.bool), 3).tolist() == [0, 0]


def test_dual_mode_rewards_follow_the_four_sets_of_the_paper():
    # One question, n = 1: row 0 is the normal-mode completion, row 1 the high-entropy one.
    # own = surprisal under the context it was generated in, cross = under the other context.
    own = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    cross = torch.tensor([[4.0, 6.0], [2.0, 1.0]])
    mask = torch.ones(2, 2)
    is_high = torch.tensor([False, True])
    alpha, eta_high, eta_normal = 0.25, 0.5, 2.0
    got_own, got_cross = dual_mode_internal_rewards(
        own, cross, mask, is_high, 2, alpha, eta_high, eta_normal, normalization="none"
    )
    s_normal = torch.tensor([[1.0, 2.0], [2.0, 1.0]])  # s_N of the normal (row 0) and HE (row 1) completion
    s_high = torch.tensor([[4.0, 6.0], [3.0, 5.0]])
    b = alpha * s_high + (1 - alpha) * s_normal  # HE context: Q2 (row 1 own) and Q4 (row 0 cross)
    c = alpha * s_normal + (1 - alpha) * s_high  # normal context: Q1 (row 0 own) and Q3 (row 1 cross)
    torch.testing.assert_close(got_own, torch.stack([-eta_normal * c[0], eta_high * b[1]]))
    torch.testing.assert_close(got_cross, torch.stack([eta_high * b[0], -eta_normal * c[1]]))


def test_dual_mode_groups_are_the_2n_rows_of_one_context_with_sharing():
    generator = torch.Generator().manual_seed(1)
    own, cross = torch.rand(8, 3, generator=generator), torch.rand(8, 3, generator=generator)
    mask = torch.ones(8, 3)
    is_high = torch.tensor([False, False, True, True] * 2)
    got_own, got_cross = dual_mode_internal_rewards(own, cross, mask, is_high, 4, 0.5, 1.0, 1.0)
    high = is_high.unsqueeze(1)
    normal_context = policy_split_internal_reward(
        torch.where(high, cross, own), torch.where(high, own, cross), mask, 4, 0.5
    )
    # Every question's normal-context tokens (Q1 u Q3) have mean 0 after z-scoring.
    normal_terms = torch.where(high, got_cross, got_own)
    torch.testing.assert_close(normal_terms, -normal_context)
    assert torch.allclose(normal_terms.reshape(2, -1).mean(dim=1), torch.zeros(2), atol=1e-6)
    high_terms = torch.where(high, got_own, got_cross)
    assert torch.allclose(high_terms.reshape(2, -1).mean(dim=1), torch.zeros(2), atol=1e-6)


def test_dual_mode_without_sharing_groups_each_mode_alone_and_has_no_cross_rows():
    own = torch.tensor([[1.0], [3.0], [10.0], [30.0]])
    cross = torch.zeros(4, 1)
    is_high = torch.tensor([False, False, True, True])
    got_own, got_cross = dual_mode_internal_rewards(
        own, cross, torch.ones(4, 1), is_high, 4, 1.0, 1.0, 1.0, normalization="range", share_rollouts=False
    )
    assert got_cross is None
    # Each mode's pair is range-normalized on its own, (x - mean) / (max - min) = -0.5, +0.5; the normal mode's
    # term is a penalty (negated), the high-entropy mode's a bonus.
    torch.testing.assert_close(got_own, torch.tensor([[0.5], [-0.5], [-0.5], [0.5]]), atol=1e-5, rtol=0)


def test_mean_of_sequence_means_weighs_every_sequence_the_same_unlike_the_token_mean():
    # Rows of 1, 3, 0 and 2 valid tokens; the values at invalid tokens (99, inf) must not count.
    values = torch.tensor([[3.0, 99.0, 99.0], [1.0, 1.0, 1.0], [99.0, 99.0, 99.0], [2.0, 4.0, math.inf]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0]])
    got = mean_of_sequence_means(values, mask)
    assert got.dim() == 0
    # Per-row means 3, 1, 3 (the empty row left out), then (3 + 1 + 3) / 3; token-weighted it is 12 / 6 = 2.
    torch.testing.assert_close(got, torch.tensor(7 / 3))
    token_weighted = (values.masked_fill(mask == 0, 0.0)).sum() / mask.sum()
    assert token_weighted.item() == pytest.approx(2.0) and not math.isclose(got.item(), 2.0)
    # Equal lengths: the two averagings agree.
    equal = torch.tensor([[1, 1, 0], [1, 1, 0]])
    torch.testing.assert_close(mean_of_sequence_means(values[[1, 3]], equal), torch.tensor((1.0 + 3.0) / 2))


def test_mean_of_sequence_means_without_valid_tokens_is_nan():
    assert math.isnan(mean_of_sequence_means(torch.ones(2, 3), torch.zeros(2, 3)).item())
    assert math.isnan(mean_of_sequence_means(torch.ones(0, 3), torch.ones(0, 3)).item())


def test_weighted_total_reward_counts_a_missing_reward_as_nothing_and_all_missing_as_nan() -> None:
    from trl_policysplit.functional import weighted_total_reward

    nan = float("nan")
    rewards = torch.tensor([[1.0, 0.5], [nan, 2.0], [nan, nan], [0.0, 0.0]])
    total = weighted_total_reward(rewards, torch.tensor([1.0, 0.25]))
    assert total[:2].tolist() == [1.125, 0.5] and torch.isnan(total[2]) and total[3].item() == 0.0
    # Any leading shape: (questions, samples, functions) as the evaluator holds them.
    assert weighted_total_reward(rewards.reshape(2, 2, 2), [1.0, 0.25]).shape == (2, 2)
