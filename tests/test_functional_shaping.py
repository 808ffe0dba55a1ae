"""Advantage rules (ALGORITHMS.md §2) and DiPO's perplexity reallocation (§3) against values computed by hand."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from trl_policysplit.functional import (
    asym_advantages,
    group_normalized_advantages,
    perplexity_threshold,
    reallocated_rewards,
    sequence_perplexity,
)

NAN = float("nan")
INF = float("inf")
TRL_STD_EPS = 1e-4  # what GRPOTrainer adds to the group std


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# group_normalized_advantages


def test_group_normalized_matches_unbiased_std_plus_trl_epsilon_per_group():
    rewards = _t([1.0, 2.0, 4.0, 5.0, 0.0, 0.0, 3.0, 9.0])
    # Group 0: mean 3, unbiased variance (4 + 1 + 1 + 4) / 3. Group 1: mean 3, variance (9 + 9 + 0 + 36) / 3 = 18.
    std0 = math.sqrt(10 / 3)
    std1 = math.sqrt(18)
    expected = [(r - 3) / (std0 + TRL_STD_EPS) for r in (1, 2, 4, 5)] + [
        (r - 3) / (std1 + TRL_STD_EPS) for r in (0, 0, 3, 9)
    ]
    result = group_normalized_advantages(rewards, group_size=4)
    assert result.shape == (8,)
    torch.testing.assert_close(result, _t(expected))


def test_group_normalized_agrees_with_statistics_stdev_on_binary_groups():
    groups = [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]]
    expected = []
    for group in groups:
        mean, std = statistics.mean(group), statistics.stdev(group)  # stdev is the unbiased (n - 1) estimate
        expected += [(r - mean) / (std + TRL_STD_EPS) for r in group]
    result = group_normalized_advantages(_t(groups[0] + groups[1]), group_size=6)
    torch.testing.assert_close(result, _t(expected))


def test_group_normalized_without_scale_only_centres():
    rewards = _t([1.0, 2.0, 4.0, 5.0, 0.0, 0.0, 3.0, 9.0])
    result = group_normalized_advantages(rewards, group_size=4, scale=False)
    torch.testing.assert_close(result, _t([-2.0, -1.0, 1.0, 2.0, -3.0, -3.0, 0.0, 6.0]))


def test_group_normalized_leaves_nan_out_of_the_statistics_and_gives_it_zero():
    rewards = _t([1.0, NAN, 3.0, 2.0])
    # Scored rows [1, 3, 2]: mean 2 (not 1.5, as it would be with NaN counted as 0), unbiased std sqrt(2 / 2) = 1.
    scaled = group_normalized_advantages(rewards, group_size=4)
    torch.testing.assert_close(scaled, _t([-1 / (1 + TRL_STD_EPS), 0.0, 1 / (1 + TRL_STD_EPS), 0.0]))
    centred = group_normalized_advantages(rewards, group_size=4, scale=False)
    torch.testing.assert_close(centred, _t([-1.0, 0.0, 1.0, 0.0]))
    assert not torch.isnan(scaled).any() and not torch.isnan(centred).any()


def test_group_normalized_all_nan_single_scored_and_constant_groups_give_zero():
    rewards = _t([NAN, NAN, NAN, 5.0, 2.0, 2.0])
    for scale in (True, False):
        result = group_normalized_advantages(rewards, group_size=2, scale=scale)
        assert torch.equal(result, torch.zeros(6))


def test_group_normalized_rejects_rows_not_divisible_by_the_group_size():
    with pytest.raises(ValueError):
        group_normalized_advantages(_t([1.0, 0.0, 1.0]), group_size=2)


# ----------------------------------------------------------------------------------------------------------------
# asym_advantages


def test_asym_one_success_in_eight_with_paper_defaults():
    rewards = _t([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # p = 1/8: success ((1 - p) / p) ** 0.9 = 7 ** 0.9; failures -(p / (1 - p)) ** 0.4 = -(1/7) ** 0.4.
    expected = [-((1 / 7) ** 0.4)] * 8
    expected[3] = 7**0.9
    torch.testing.assert_close(asym_advantages(rewards, group_size=8), _t(expected))
    torch.testing.assert_close(asym_advantages(rewards, 8, beta_pos=0.9, beta_neg=0.4), _t(expected))


def test_asym_one_failure_in_eight():
    rewards = _t([1.0] * 5 + [0.0] + [1.0] * 2)
    # p = 7/8: failure -(p / (1 - p)) ** 0.4 = -(7 ** 0.4); successes ((1 - p) / p) ** 0.9 = (1/7) ** 0.9.
    expected = [(1 / 7) ** 0.9] * 8
    expected[5] = -(7**0.4)
    torch.testing.assert_close(asym_advantages(rewards, 8, beta_pos=0.9, beta_neg=0.4), _t(expected))


def test_asym_exponents_act_on_their_own_side_only():
    rewards = _t([1.0, 0.0, 0.0, 0.0])
    # p = 1/4: success 3 ** beta_pos, failures -(1/3) ** beta_neg.
    result = asym_advantages(rewards, 4, beta_pos=2.0, beta_neg=1.0)
    torch.testing.assert_close(result, _t([3.0**2, -(1 / 3), -(1 / 3), -(1 / 3)]))
    result = asym_advantages(rewards, 4, beta_pos=1.0, beta_neg=2.0)
    torch.testing.assert_close(result, _t([3.0, -((1 / 3) ** 2), -((1 / 3) ** 2), -((1 / 3) ** 2)]))


def test_asym_with_half_exponents_is_grpo_with_population_std():
    groups = [
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
        [0.0, 1.0, 1.0, 1.0],
        [0.0, 0.0, 1.0, 0.0],
        [1.0, 0.0, 1.0, 0.0],
    ]
    expected = []
    for group in groups:
        mean, std = statistics.mean(group), statistics.pstdev(group)
        expected += [(r - mean) / std for r in group]
    rewards = _t([r for group in groups for r in group])
    torch.testing.assert_close(asym_advantages(rewards, 4, beta_pos=0.5, beta_neg=0.5), _t(expected))
    # Spot check of one group by the paper's formula: p = 1/4 gives sqrt(3) and -sqrt(1/3).
    torch.testing.assert_close(expected[:2], [math.sqrt(3), -math.sqrt(1 / 3)])


@pytest.mark.parametrize("value", [0.0, 1.0, 0.3])
def test_asym_groups_with_all_rewards_equal_get_exactly_zero(value):
    rewards = torch.full((8,), value)
    assert torch.equal(asym_advantages(rewards, group_size=8), torch.zeros(8))
    assert torch.equal(asym_advantages(rewards, group_size=4, beta_pos=0.5, beta_neg=0.5), torch.zeros(8))


def test_asym_reward_range_reduces_to_the_binary_formula_at_its_ends():
    # Range (-1, 2): -1 maps to 0 and 2 maps to 1, so this is the one-success-in-eight case.
    rewards = _t([-1.0, -1.0, 2.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    expected = [-((1 / 7) ** 0.4)] * 8
    expected[2] = 7**0.9
    torch.testing.assert_close(asym_advantages(rewards, 8, reward_range=(-1.0, 2.0)), _t(expected))
    # And one failure in eight.
    rewards = _t([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, -1.0])
    expected = [(1 / 7) ** 0.9] * 7 + [-(7**0.4)]
    torch.testing.assert_close(asym_advantages(rewards, 8, reward_range=(-1.0, 2.0)), _t(expected))


def test_asym_non_binary_symmetric_group():
    # [0, 0.5, 1]: mu = 0.5; 1 -> ((1 - 0.5) / 0.5) ** 0.9 = 1, 0.5 -> 0, 0 -> -((0.5 - 0) / (1 - 0.5)) ** 0.4 = -1.
    result = asym_advantages(_t([0.0, 0.5, 1.0]), 3)
    torch.testing.assert_close(result, _t([-1.0, 0.0, 1.0]))
    assert result[1].item() == 0.0


def test_asym_non_binary_hand_computed_group():
    # [0, 0.25, 1]: mu = 1.25 / 3 = 5/12.
    #   1    -> ((1 - 5/12) / (5/12)) ** 0.9      = (7/5) ** 0.9
    #   0.25 -> -((5/12 - 3/12) / (1 - 5/12)) ** 0.4 = -(2/7) ** 0.4
    #   0    -> -((5/12 - 0) / (7/12)) ** 0.4      = -(5/7) ** 0.4
    expected = _t([-((5 / 7) ** 0.4), -((2 / 7) ** 0.4), (7 / 5) ** 0.9])
    torch.testing.assert_close(asym_advantages(_t([0.0, 0.25, 1.0]), 3), expected)
    # The same rewards on a (0, 10) scale map to the same unit values.
    torch.testing.assert_close(asym_advantages(_t([0.0, 2.5, 10.0]), 3, reward_range=(0.0, 10.0)), expected)


def test_asym_non_binary_two_above_the_mean():
    # [0.2, 0.6, 1.0]: mu = 0.6; 1.0 -> (0.4 / 0.6) ** 0.9, 0.6 -> 0, 0.2 -> -(0.4 / 0.4) ** 0.4 = -1.
    result = asym_advantages(_t([1.0, 0.2, 0.6]), 3)
    torch.testing.assert_close(result, _t([(0.4 / 0.6) ** 0.9, -1.0, 0.0]))


def test_asym_nan_rewards_are_left_out_of_the_mean_and_get_zero():
    rewards = _t([1.0, 0.0, NAN, 0.0])
    # Scored [1, 0, 0]: mu = 1/3 (not 1/4): success ((2/3) / (1/3)) ** 0.9 = 2 ** 0.9, failures -(1/2) ** 0.4.
    result = asym_advantages(rewards, 4)
    torch.testing.assert_close(result, _t([2**0.9, -(0.5**0.4), 0.0, -(0.5**0.4)]))
    all_nan = asym_advantages(_t([NAN, NAN, 1.0, 1.0]), 2)
    assert torch.equal(all_nan, torch.zeros(4))


def test_asym_nan_with_a_non_binary_range():
    # Range (-1, 1): rewards [1, NaN, 0, -1] map to [1, NaN, 0.5, 0]; mu = 0.5 -> [1, 0, 0, -1].
    result = asym_advantages(_t([1.0, NAN, 0.0, -1.0]), 4, reward_range=(-1.0, 1.0))
    torch.testing.assert_close(result, _t([1.0, 0.0, 0.0, -1.0]))


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_asym_reward_outside_the_range_is_an_error(bad):
    with pytest.raises(ValueError):
        asym_advantages(_t([0.0, bad, 1.0, 0.0]), 4)


def test_asym_reward_outside_a_custom_range_is_an_error():
    with pytest.raises(ValueError):
        asym_advantages(_t([-1.0, 3.0]), 2, reward_range=(-1.0, 2.0))
    # The range's own ends are inside it.
    asym_advantages(_t([-1.0, 2.0]), 2, reward_range=(-1.0, 2.0))


@pytest.mark.parametrize("reward_range", [(1.0, 0.0), (0.5, 0.5), (2.0, -1.0)])
def test_asym_inverted_or_empty_range_is_an_error(reward_range):
    with pytest.raises(ValueError):
        asym_advantages(_t([0.0, 1.0]), 2, reward_range=reward_range)
    # Also when every reward sits on the range's bounds (an empty range must not turn them into 0 / 0 = NaN).
    with pytest.raises(ValueError):
        asym_advantages(_t([reward_range[0], reward_range[0]]), 2, reward_range=reward_range)


def test_asym_groups_in_one_call_are_independent():
    rewards = _t([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    third = 1 / 3
    expected = [
        *[3**0.9, -(third**0.4), -(third**0.4), -(third**0.4)],  # p = 1/4
        *[1.0, 1.0, -1.0, -1.0],  # p = 1/2: both ratios are 1
        *[0.0, 0.0, 0.0, 0.0],  # all equal
        *[-(3**0.4), third**0.9, third**0.9, third**0.9],  # p = 3/4
    ]
    result = asym_advantages(rewards, 4)
    torch.testing.assert_close(result, _t(expected))
    # Each group alone gives the same values.
    for g in range(4):
        torch.testing.assert_close(asym_advantages(rewards[4 * g : 4 * g + 4], 4), result[4 * g : 4 * g + 4])


def test_asym_rejects_rows_not_divisible_by_the_group_size():
    with pytest.raises(ValueError):
        asym_advantages(_t([1.0, 0.0, 0.0, 1.0, 0.0]), group_size=2)


# ----------------------------------------------------------------------------------------------------------------
# sequence_perplexity


def test_sequence_perplexity_is_exp_of_mean_surprisal_over_valid_tokens():
    logps = _t(
        [
            [-1.0, -2.0, -3.0, NAN],
            [-0.5, -INF, INF, 1e30],
            [0.0, -0.7, NAN, -5.0],
            [-4.0, -4.0, -4.0, -4.0],
        ]
    )
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    # Mean surprisal: (1 + 2 + 3) / 3 = 2; 0.5; (0 + 0.7) / 2 = 0.35; 4. Garbage in padded positions is ignored.
    expected = _t([math.exp(2.0), math.exp(0.5), math.exp(0.35), math.exp(4.0)])
    torch.testing.assert_close(sequence_perplexity(logps, mask), expected)
    torch.testing.assert_close(sequence_perplexity(logps, mask.bool()), expected)
    torch.testing.assert_close(sequence_perplexity(logps, mask.float()), expected)


def test_sequence_perplexity_of_a_row_without_valid_tokens_is_nan():
    logps = _t([[-1.0, -3.0], [-2.0, NAN]])
    mask = torch.tensor([[1, 1], [0, 0]])
    result = sequence_perplexity(logps, mask)
    assert result.shape == (2,)
    assert result[0].item() == pytest.approx(math.exp(2.0))
    assert math.isnan(result[1].item())


# ----------------------------------------------------------------------------------------------------------------
# perplexity_threshold


def _bools(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def test_threshold_perfectly_separable_is_the_boundary_midpoint_and_valid():
    # Sorted: 1 (c), 2 (c), 3 (w), 4 (w); the cut between 2 and 3 has no errors.
    tau, valid = perplexity_threshold(_t([4.0, 1.0, 3.0, 2.0]), _bools([0, 1, 0, 1]))
    assert isinstance(tau, float)
    assert tau == pytest.approx((2.0 + 3.0) / 2)
    assert valid is True


def test_threshold_uneven_separable_midpoint():
    # Correct at 1.1, 1.3, 1.7; wrong at 2.5, 4.0: boundary midpoint (1.7 + 2.5) / 2 = 2.1.
    tau, valid = perplexity_threshold(_t([2.5, 1.3, 4.0, 1.1, 1.7]), _bools([0, 1, 0, 1, 1]))
    assert tau == pytest.approx((1.7 + 2.5) / 2)
    assert valid


def test_threshold_inverted_queue_is_invalid():
    # Sorted labels w, w, c, c. Errors (wrong below + correct above): tau 1.5 -> 1 + 2 = 3, 2.5 -> 2 + 2 = 4,
    # 3.5 -> 2 + 1 = 3. Tie: the smallest, 1.5, whose low side holds no correct completion.
    tau, valid = perplexity_threshold(_t([1.0, 2.0, 3.0, 4.0]), _bools([0, 0, 1, 1]))
    assert tau == pytest.approx(1.5)
    assert valid is False


def test_threshold_tie_between_first_and_last_candidates_takes_the_smallest():
    # Labels c, w, c, w. Errors (wrong below + correct above): 1.5 -> 0 + 1 = 1, 2.5 -> 1 + 1 = 2,
    # 3.5 -> 1 + 0 = 1. So 1.5 and 3.5 tie at 1: take 1.5.
    tau, valid = perplexity_threshold(_t([1.0, 2.0, 3.0, 4.0]), _bools([1, 0, 1, 0]))
    assert tau == pytest.approx(1.5)
    # Below {c}: 1/1 correct; above {w, c, w}: 2/3 wrong.
    assert valid


def test_threshold_tie_between_later_candidates_takes_the_smaller():
    # Labels w, c, c, w, c, w (3 correct). Errors per cut k (k smallest below), wrong_below + correct_above:
    #   k=1: 1 + 3 = 4, k=2: 1 + 2 = 3, k=3: 1 + 1 = 2, k=4: 2 + 1 = 3, k=5: 2 + 0 = 2.
    # Minimum 2 at k=3 (tau 3.5) and k=5 (tau 5.5): the smaller wins.
    tau, valid = perplexity_threshold(_t([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), _bools([0, 1, 1, 0, 1, 0]))
    assert tau == pytest.approx(3.5)
    # Below {w, c, c}: 2/3 correct; above {w, c, w}: 2/3 wrong.
    assert valid


def test_threshold_candidates_lie_only_between_distinct_values():
    # Values 1, 1, 2, 2, 3 with labels c, c, {c, w}, w. Cutting inside the pair of 2s (tau 2.0) would have no
    # error, but is not a candidate. Candidates: 1.5 -> 0 + 1 = 1, 2.5 -> 1 + 0 = 1; tie -> 1.5.
    tau, valid = perplexity_threshold(_t([2.0, 1.0, 3.0, 2.0, 1.0]), _bools([1, 1, 0, 0, 1]))
    assert tau == pytest.approx(1.5)
    # Below {c, c}; above {c, w, w}: 2/3 wrong.
    assert valid
    # Same labels with the correct 2 listed after the wrong one: same answer, the order of duplicates is irrelevant.
    tau2, valid2 = perplexity_threshold(_t([2.0, 1.0, 3.0, 2.0, 1.0]), _bools([0, 1, 0, 1, 1]))
    assert (tau2, valid2) == (tau, valid)


def test_threshold_midpoint_between_runs_of_duplicates():
    tau, valid = perplexity_threshold(_t([2.0, 5.0, 2.0, 5.0, 2.0]), _bools([1, 0, 1, 0, 1]))
    assert tau == pytest.approx((2.0 + 5.0) / 2)
    assert valid


@pytest.mark.parametrize(
    ("ppl", "correct"),
    [
        ([3.0, 3.0, 3.0], [1, 0, 1]),
        ([2.0], [1]),
        ([], []),
        ([NAN, NAN], [1, 0]),
        ([NAN, 4.0, NAN, 4.0], [1, 0, 0, 1]),
    ],
)
def test_threshold_needs_two_distinct_values(ppl, correct):
    assert perplexity_threshold(_t(ppl), _bools(correct)) == (None, False)


def test_threshold_ignores_nan_perplexities():
    # Without the NaN rows this is the separable queue 1 c, 2 c, 3 w, 4 w. Were the three correct NaN rows counted
    # above tau, only 2 of 5 rows there would be wrong and the split would be invalid.
    ppl = _t([1.0, NAN, 2.0, NAN, 3.0, 4.0, NAN])
    correct = _bools([1, 1, 1, 1, 0, 0, 1])
    tau, valid = perplexity_threshold(ppl, correct)
    assert tau == pytest.approx(2.5)
    assert valid


def test_threshold_exactly_half_correct_below_is_invalid():
    # Labels w, c, w, w. Errors: 1.5 -> 1 + 1 = 2, 2.5 -> 1 + 0 = 1, 3.5 -> 2 + 0 = 2. Best tau 2.5,
    # but below {w, c} is exactly 1/2 correct: not > 0.5.
    tau, valid = perplexity_threshold(_t([1.0, 2.0, 3.0, 4.0]), _bools([0, 1, 0, 0]))
    assert tau == pytest.approx(2.5)
    assert valid is False


def test_threshold_exactly_half_wrong_above_is_invalid():
    # Labels c, c, w, c. Errors: 1.5 -> 0 + 2 = 2, 2.5 -> 0 + 1 = 1, 3.5 -> 1 + 1 = 2. Best tau 2.5,
    # above {w, c} is exactly 1/2 wrong: not > 0.5.
    tau, valid = perplexity_threshold(_t([1.0, 2.0, 3.0, 4.0]), _bools([1, 1, 0, 1]))
    assert tau == pytest.approx(2.5)
    assert valid is False


# ----------------------------------------------------------------------------------------------------------------
# reallocated_rewards


def _check(result, rewards: list[float], active: list[bool]) -> None:
    got_rewards, got_active = result
    assert got_rewards.dtype.is_floating_point
    assert got_active.dtype == torch.bool
    torch.testing.assert_close(got_rewards, _t(rewards))
    assert got_active.tolist() == active


def test_confidently_wrong_group_rewards_its_highest_perplexity_completion():
    correct = _bools([0, 0, 0, 0])
    ppl = _t([1.2, 1.5, 1.1, 1.3])  # mean 1.275 < tau 2
    _check(reallocated_rewards(correct, ppl, 4, tau=2.0), [0.0, 1.0, 0.0, 0.0], [True] * 4)


def test_confidently_wrong_uses_the_group_mean_not_each_row():
    # One row is above tau but the mean (1 + 1 + 1 + 5) / 4 = 2 is below 2.5: active, and that row gets 1.
    ppl = _t([1.0, 1.0, 1.0, 5.0])
    _check(reallocated_rewards(_bools([0, 0, 0, 0]), ppl, 4, tau=2.5), [0.0, 0.0, 0.0, 1.0], [True] * 4)


def test_ties_in_the_highest_perplexity_go_to_the_first():
    ppl = _t([1.0, 1.5, 1.5, 1.2])
    _check(reallocated_rewards(_bools([0, 0, 0, 0]), ppl, 4, tau=2.0), [0.0, 1.0, 0.0, 0.0], [True] * 4)
    _check(reallocated_rewards(_bools([1, 1, 1, 1]), ppl + 2.0, 4, tau=2.0), [1.0, 0.0, 1.0, 1.0], [True] * 4)


def test_uncertain_correct_group_zeroes_its_highest_perplexity_completion():
    correct = _bools([1, 1, 1, 1])
    ppl = _t([3.0, 5.0, 4.0, 3.5])  # mean 3.875 > tau 2
    _check(reallocated_rewards(correct, ppl, 4, tau=2.0), [1.0, 0.0, 1.0, 1.0], [True] * 4)


def test_all_wrong_with_mean_above_tau_is_inactive():
    ppl = _t([3.0, 5.0, 1.0, 3.5])  # mean 3.125 > 2
    _check(reallocated_rewards(_bools([0, 0, 0, 0]), ppl, 4, tau=2.0), [0.0] * 4, [False] * 4)


def test_all_correct_with_mean_below_tau_is_inactive():
    ppl = _t([1.0, 1.5, 3.0, 1.2])  # mean 1.675 < 2
    _check(reallocated_rewards(_bools([1, 1, 1, 1]), ppl, 4, tau=2.0), [1.0] * 4, [False] * 4)


def test_group_mean_equal_to_tau_is_inactive_both_ways():
    ppl = _t([1.0, 3.0])  # mean exactly 2.0
    _check(reallocated_rewards(_bools([0, 0]), ppl, 2, tau=2.0), [0.0, 0.0], [False, False])
    _check(reallocated_rewards(_bools([1, 1]), ppl, 2, tau=2.0), [1.0, 1.0], [False, False])


@pytest.mark.parametrize("ppl", [[1.0, 1.1, 1.2, 1.3], [9.0, 8.0, 7.0, 6.0]])
def test_mixed_groups_are_untouched_and_inactive(ppl):
    correct = _bools([1, 0, 0, 1])
    _check(reallocated_rewards(correct, _t(ppl), 4, tau=2.0), [1.0, 0.0, 0.0, 1.0], [False] * 4)


def test_no_threshold_leaves_every_group_inactive():
    correct = _bools([0, 0, 1, 1])
    ppl = _t([1.0, 1.5, 5.0, 6.0])  # would be active in both groups for any tau in (1.25, 5.5)
    _check(reallocated_rewards(correct, ppl, 2, tau=None), [0.0, 0.0, 1.0, 1.0], [False] * 4)
    # Sanity check that these groups are active with a threshold.
    _check(reallocated_rewards(correct, ppl, 2, tau=3.0), [0.0, 1.0, 1.0, 0.0], [True] * 4)


def test_nan_perplexity_makes_its_group_inactive():
    correct = _bools([0, 0, 0, 1, 1, 1])
    ppl = _t([1.0, NAN, 1.2, 5.0, 6.0, NAN])
    _check(reallocated_rewards(correct, ppl, 3, tau=2.0), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0], [False] * 6)


def test_reallocation_handles_several_groups_in_one_call():
    correct = _bools([0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1])
    ppl = _t([1.0, 1.4, 1.2, 3.0, 4.0, 3.5, 1.0, 1.0, 1.0, 3.0, 4.0, 5.0, 1.0, 1.1, 1.2])
    rewards = [0.0, 1.0, 0.0] + [1.0, 0.0, 1.0] + [1.0, 0.0, 1.0] + [0.0, 0.0, 0.0] + [1.0, 1.0, 1.0]
    active = [True] * 3 + [True] * 3 + [False] * 3 + [False] * 3 + [False] * 3
    _check(reallocated_rewards(correct, ppl, 3, tau=2.0), rewards, active)


def test_reallocation_rejects_rows_not_divisible_by_the_group_size():
    with pytest.raises(ValueError):
        reallocated_rewards(_bools([0, 0, 0]), _t([1.0, 2.0, 3.0]), 2, tau=2.0)
