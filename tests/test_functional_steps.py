"""The step functions of the functional core (ALGORITHMS.md §5.1) on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from trl.trainer.utils import nanstd

from trl_policysplit.functional import (
    DualModeSettings,
    advantage_metrics,
    cross_pair_inputs,
    dipo_step,
    entropy_advantage_step,
    grpo_advantages,
    kl_cov_step,
    kl_high_entropy_to_normal,
    mode_entropy_sums,
    mode_kl_parts,
    mode_kl_shares,
    outside_reward_range,
    policy_split_mode_metrics,
    policy_split_modes,
    policy_split_step,
    token_sums,
)


def test_grpo_advantages_scale_each_way_as_trl():
    rewards = torch.tensor([[1.0], [0.0], [3.0], [3.0]])
    weights = torch.tensor([1.0])
    group = 0.5 / (math.sqrt(0.5) + 1e-4)  # group 1: mean 0.5, unbiased std sqrt(0.5); group 2 has no spread
    torch.testing.assert_close(grpo_advantages(rewards, weights, 2), torch.tensor([group, -group, 0.0, 0.0]))
    # Batch: centred per group, divided by the std of all four rewards (mean 1.75, unbiased variance 6.75 / 3).
    batch = 0.5 / (1.5 + 1e-4)
    torch.testing.assert_close(grpo_advantages(rewards, weights, 2, "batch"), torch.tensor([batch, -batch, 0.0, 0.0]))
    torch.testing.assert_close(grpo_advantages(rewards, weights, 2, "none"), torch.tensor([0.5, -0.5, 0.0, 0.0]))


def test_grpo_advantages_normalize_then_sum_and_unscored_rows_as_trl():
    rewards = torch.tensor([[1.0, 2.0], [0.0, float("nan")], [3.0, 5.0], [float("nan"), float("nan")]])
    weights = torch.tensor([1.0, 0.5])
    # TRL's rule written out with TRL's own nanstd: per function z-score in each group, weighted sum, then over all.
    grouped = rewards.view(-1, 2, 2)
    per_function = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (
        nanstd(grouped, dim=1, keepdim=True) + 1e-4
    )
    total = (per_function.view(-1, 2) * weights).nansum(dim=1)
    total[3] = float("nan")  # no function scored it
    expected = torch.nan_to_num((total - torch.nanmean(total)) / (nanstd(total) + 1e-4), nan=0.0)
    got = grpo_advantages(rewards, weights, 2, aggregation="normalize_then_sum")
    torch.testing.assert_close(got, expected)
    assert got[3] == 0.0
    with pytest.raises(ValueError, match="aggregation"):
        grpo_advantages(rewards, weights, 2, aggregation="mean")


def test_advantage_metrics_count_groups_by_their_scored_completions():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, float("nan")])
    metrics = advantage_metrics(torch.tensor([0.0, 0.0, -0.5, -1.5, 2.0, 0.0]), rewards, rewards > 0.5, 2)
    assert metrics["advantage/pos_mean"] == 2.0 and metrics["advantage/neg_mean"] == -1.0
    assert metrics["advantage/frac_groups_solved_none"] == pytest.approx(1 / 3)
    assert metrics["advantage/frac_groups_solved_all"] == pytest.approx(2 / 3)  # the NaN row does not count


def test_dipo_step_lifts_the_most_perplexed_completion_of_a_confidently_wrong_group():
    rewards = torch.tensor([0.0, 0.0, 1.0, 0.0])
    correct = rewards > 0.5
    ppl = torch.tensor([1.2, 1.5, 1.1, 3.0])
    term, metrics = dipo_step(rewards, correct, ppl, 2, threshold=2.0, valid_split=True, ppl_alpha=0.5)
    # Group 1 is all wrong with mean PPL 1.35 < 2: row 1 (highest PPL) gets reallocated reward 1, GRPO's rule on
    # [0, 1] gives -+0.5 / (std sqrt(0.5) + 1e-4). Group 2 has its own signal: 0.
    lifted = 0.5 * 0.5 / (math.sqrt(0.5) + 1e-4)
    torch.testing.assert_close(term, torch.tensor([-lifted, lifted, 0.0, 0.0]))
    assert metrics == {
        "dipo/threshold": 2.0,
        "dipo/valid_split": 1.0,
        "dipo/frac_groups_up": 0.5,
        "dipo/frac_groups_down": 0.0,
    }
    asymmetric, _ = dipo_step(rewards, correct, ppl, 2, 2.0, True, 0.5, asymmetric=True, beta_pos=1.0, beta_neg=1.0)
    torch.testing.assert_close(asymmetric, torch.tensor([-0.5, 0.5, 0.0, 0.0]))  # p = 1/2: (1-p)/p = 1
    idle, metrics = dipo_step(rewards, correct, ppl, 2, threshold=2.0, valid_split=False, ppl_alpha=0.5)
    assert not idle.any() and metrics["dipo/valid_split"] == 0.0 and metrics["dipo/frac_groups_up"] == 0.0


def test_policy_split_modes_count_from_the_process_first_row():
    assert policy_split_modes(6, 4, first_row=2).tolist() == [True, True, False, False, True, True]
    assert policy_split_modes(4, 4).tolist() == [False, False, True, True]


def test_cross_pair_inputs_left_pad_both_prompts_to_one_width():
    inputs = cross_pair_inputs(
        prompt_ids=torch.tensor([[5, 6], [0, 7]]),
        prompt_mask=torch.tensor([[1, 1], [0, 1]]),
        cross_prompt_ids=torch.tensor([[8, 5, 6], [0, 9, 7]]),
        cross_prompt_mask=torch.tensor([[1, 1, 1], [0, 1, 1]]),
        completion_ids=torch.tensor([[3, 4], [2, 0]]),
        completion_mask=torch.tensor([[1, 1], [1, 0]]),
        pad_token_id=0,
    )
    assert inputs.prompt_ids.tolist() == [[0, 5, 6], [0, 0, 7], [8, 5, 6], [0, 9, 7]]
    assert inputs.prompt_mask.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 1], [0, 1, 1]]
    assert inputs.input_ids.tolist() == [[0, 5, 6, 3, 4], [0, 0, 7, 2, 0], [8, 5, 6, 3, 4], [0, 9, 7, 2, 0]]
    assert inputs.attention_mask[:, 3:].tolist() == [[1, 1], [1, 0], [1, 1], [1, 0]]


def _one_group(**overrides) -> tuple[torch.Tensor, ...]:
    """One question, one normal (row 0) and one HE completion (row 1) of one token each."""
    values = {
        "base_advantages": torch.tensor([0.5, -0.5]),
        "rewards": torch.tensor([1.0, 0.0]),
        "own_logps": torch.tensor([[-1.0], [-2.0]]),
        "cross_logps": torch.tensor([[-3.0], [-0.5]]),
        "mask": torch.ones(2, 1, dtype=torch.long),
        "is_high_entropy": torch.tensor([False, True]),
        "group_size": 2,
    }
    values.update(overrides)
    return values


def _settings(**overrides) -> DualModeSettings:
    values = {"alpha": 1.0, "eta_high": 1.0, "eta_normal": 0.0, "kappa": 0.0, "bonus_normalization": "none"}
    values.update(overrides)
    return DualModeSettings(**values)


def test_policy_split_step_adds_each_context_term_to_the_base_advantage():
    # Surprisals: own [1, 2], cross [3, 0.5]. HE context: row 1's own (2) and row 0's cross (3); eta_high = 1.
    advantages, metrics = policy_split_step(**_one_group(), settings=_settings())
    torch.testing.assert_close(advantages.own, torch.tensor([[0.5], [-0.5 + 2.0]]))
    torch.testing.assert_close(advantages.cross, torch.tensor([[0.5 + 3.0], [-0.5]]))
    assert advantages.cross_weights is None and metrics["policy_split/clamp_frac"] == 0.0


def test_policy_split_step_clamps_by_the_advantage_and_counts_per_context():
    advantages, metrics = policy_split_step(**_one_group(), settings=_settings(kappa=2.0))  # bound |A| / 2 = 0.25
    torch.testing.assert_close(advantages.own, torch.tensor([[0.5], [-0.25]]))
    torch.testing.assert_close(advantages.cross, torch.tensor([[0.75], [-0.5]]))
    # Both clamped tokens are trained under the HE context; the normal context's terms are 0.
    assert metrics["policy_split/normal/clamp_frac"] == 0.0
    assert metrics["policy_split/high_entropy/clamp_frac"] == 1.0
    assert metrics["policy_split/clamp_frac"] == 0.5


def test_policy_split_step_penalty_acts_outside_the_clamp_and_unscored_rows_get_no_term():
    settings = _settings(kappa=2.0, mode_kl_coef=0.1)
    advantages, _ = policy_split_step(**_one_group(), settings=settings)
    # HE-context rows: row 1's own (-0.1 * (s_normal 0.5 - s_HE 2)) and row 0's cross (-0.1 * (1 - 3)).
    torch.testing.assert_close(advantages.own, torch.tensor([[0.5], [-0.25 + 0.15]]))
    torch.testing.assert_close(advantages.cross, torch.tensor([[0.75 + 0.2], [-0.5]]))
    unscored, _ = policy_split_step(**_one_group(rewards=torch.tensor([1.0, float("nan")])), settings=settings)
    torch.testing.assert_close(unscored.own, torch.tensor([[0.5], [-0.5]]))  # row 1: neither bonus nor penalty


def test_policy_split_step_weighs_cross_rows_and_takes_entropies_when_asked():
    settings = _settings(cross_importance_sampling="token_truncate", cross_importance_cap=2.0)
    advantages, metrics = policy_split_step(**_one_group(), settings=settings)
    # Row 0's cross weight exp(-3 - -1) = e^-2; row 1's exp(-0.5 - -2) = e^1.5, capped at 2.
    weights = torch.tensor([[math.exp(-2.0)], [2.0]])
    torch.testing.assert_close(advantages.cross_weights, weights)
    torch.testing.assert_close(advantages.cross, torch.tensor([[3.5], [-0.5]]) * weights)
    assert metrics["policy_split/cross_is_weight/high_entropy_context"] == pytest.approx(math.exp(-2.0))
    assert metrics["policy_split/cross_is_capped_frac/normal_context"] == 1.0
    entropies = _settings(entropy_estimator="entropy")
    with pytest.raises(ValueError, match="entropies"):
        policy_split_step(**_one_group(), settings=entropies)
    advantages, _ = policy_split_step(
        **_one_group(),
        settings=entropies,
        own_entropies=torch.tensor([[0.0], [4.0]]),
        cross_entropies=torch.zeros(2, 1),
    )
    torch.testing.assert_close(advantages.own, torch.tensor([[0.5], [3.5]]))
    unshared, _ = policy_split_step(**_one_group(group_size=2), settings=_settings(share_rollouts=False))
    assert unshared.cross is None


@pytest.mark.parametrize("share_rollouts", [True, False])
def test_policy_split_step_without_cross_logps_gives_what_the_full_step_gives_when_nothing_reads_them(share_rollouts):
    # Two questions of 2n = 4 rows, uneven lengths, one row without a valid token.
    base = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, 2.0, -2.0, 0.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]])
    group = {
        "base_advantages": base,
        "rewards": torch.tensor([1.0, 0.0, 1.0, float("nan"), 0.0, 1.0, 0.0, 1.0]),
        "own_logps": -torch.rand(8, 3, generator=torch.Generator().manual_seed(0)),
        "mask": mask,
        "is_high_entropy": torch.tensor([False, False, True, True] * 2),
        "group_size": 4,
    }
    settings = _settings(eta_high=0.0, kappa=1.0, bonus_normalization="zscore", share_rollouts=share_rollouts)
    assert not settings.reads_cross_surprisals
    full, full_metrics = policy_split_step(**group, cross_logps=-torch.rand(8, 3), settings=settings)
    alone, metrics = policy_split_step(**group, cross_logps=None, settings=settings)
    torch.testing.assert_close(alone.own, base.reshape(-1, 1).expand(8, 3), rtol=0, atol=0)
    torch.testing.assert_close(alone.own, full.own, rtol=0, atol=0)
    if share_rollouts:
        torch.testing.assert_close(alone.cross, full.cross, rtol=0, atol=0)
    else:
        assert alone.cross is None and full.cross is None
    assert (
        metrics
        == full_metrics
        == {
            "policy_split/normal/clamp_frac": 0.0,
            "policy_split/high_entropy/clamp_frac": 0.0,
            "policy_split/clamp_frac": 0.0,
        }
    )


@pytest.mark.parametrize(
    "setting",
    [{"eta_high": 0.1}, {"eta_normal": 0.1}, {"mode_kl_coef": 0.1}, {"cross_importance_sampling": "token_truncate"}],
)
def test_policy_split_step_asks_for_cross_logps_when_the_settings_read_them(setting):
    settings = _settings(**{"eta_high": 0.0, **setting})
    assert settings.reads_cross_surprisals
    with pytest.raises(ValueError, match="needs cross_logps"):
        policy_split_step(**{**_one_group(), "cross_logps": None}, settings=settings)


def test_mode_kl_parts_of_the_loss_micro_batches_add_up_to_the_group_metrics():
    # Three completions (normal 0, HE 1 and 2; completion 2 has one valid token), each row also as a cross row.
    own = torch.tensor([[-1.0, -2.0], [-0.5, -0.5], [-3.0, -1.0]])
    cross = torch.tensor([[-2.0, -2.5], [-1.5, -4.5], [-1.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]])
    is_high = torch.tensor([False, True, True])
    shares = mode_kl_shares(mask, is_high)
    # Per completion 1 / |S| (1 normal, 2 HE completions); per token 1 / tokens (2 normal, 3 HE tokens).
    torch.testing.assert_close(shares, torch.tensor([[1.0, 0.5], [0.5, 1 / 3], [0.5, 1 / 3]]))
    batch = {  # own rows then cross rows; on-policy the loss forward gives a cross row its cross log-probs
        "sampled_logps": torch.cat([own, own]),
        "logps": torch.cat([own, cross]),
        "mask": torch.cat([mask, mask]),
        "context": torch.cat([is_high, ~is_high]).long(),
        "is_cross": torch.tensor([False] * 3 + [True] * 3),
        "shares": torch.cat([torch.zeros_like(shares), shares]),
    }
    # Two micro-batches, rows shuffled between them: the parts add up to the same.
    order = torch.tensor([4, 0, 2, 5, 1, 3])
    halves = [{key: value[order[i : i + 3]] for key, value in batch.items()} for i in (0, 3)]
    parts = [mode_kl_parts(**half) for half in halves]
    totals = {name: sum(part[name] for part in parts).item() for name in parts[0]}
    # Normal completion 0 under the HE prompt: differences [1, 0.5]. HE completions under the normal prompt: [1, 4]
    # and [-2] (its second token is padding): per completion (2.5 - 2) / 2, per token 3 / 3.
    assert totals == pytest.approx(
        {
            "policy_split/kl_normal_to_high_entropy": 0.75,
            "policy_split/kl_normal_to_high_entropy_token": 0.75,
            "policy_split/kl_high_entropy_to_normal": 0.25,
            "policy_split/kl_high_entropy_to_normal_token": 1.0,
        }
    )
    metrics = policy_split_mode_metrics(
        torch.ones(3), torch.zeros(3, 2, dtype=torch.long), mask, is_high, own, cross, 3, 0.5
    )
    assert {name: metrics[name] for name in totals} == pytest.approx(totals)
    without = policy_split_mode_metrics(
        torch.ones(3), torch.zeros(3, 2, dtype=torch.long), mask, is_high, own, None, 3, 0.5
    )
    assert set(metrics) - set(without) == set(totals)
    assert torch.isnan(mode_kl_shares(mask, torch.zeros(3, dtype=torch.bool))[:, 0]).sum() == 0  # all normal
    assert torch.isnan(mode_kl_shares(torch.zeros(3, 2, dtype=torch.long), is_high)).all()  # no valid token


def test_dual_mode_settings_read_the_config_fields():
    class Config:
        alpha, eta_high, eta_normal, kappa = 0.5, 0.9, 0.2, 3.0
        bonus_normalization, bonus_low_quantile, share_rollouts, entropy_estimator = "range", 0.1, False, "entropy"
        mode_kl_coef, bonus_uniform_reward_groups_only = 0.3, True
        cross_importance_sampling, cross_importance_cap = "sequence_truncate", 4.0

    settings = DualModeSettings.from_config(Config(), eta_high=0.25)
    assert settings.eta_high == 0.25 and settings.alpha == 0.5 and settings.cross_importance_cap == 4.0
    assert settings.bonus_normalization == "range" and settings.share_rollouts is False


def test_kl_high_entropy_to_normal_averages_each_he_completion_over_its_tokens():
    own = torch.tensor([[0.0, 0.0], [-1.0, -1.0], [-2.0, -9.0]])
    cross = torch.tensor([[-5.0, -5.0], [-2.0, -4.0], [-3.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]])
    # HE rows 1 and 2: means (1 + 3) / 2 = 2 and 1 (its second token is padding).
    assert kl_high_entropy_to_normal(own, cross, mask, torch.tensor([False, True, True])) == pytest.approx(1.5)
    assert math.isnan(kl_high_entropy_to_normal(own, cross, mask, torch.zeros(3, dtype=torch.bool)))


def test_loss_steps_return_token_sums():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert token_sums(torch.tensor([[1.0, 2.0, 9.0], [4.0, 9.0, 9.0]]), mask).tolist() == [7.0, 3.0]
    entropies = torch.tensor([[1.0, 5.0, 9.0], [2.0, 9.0, 9.0]])
    shaped, sums = entropy_advantage_step(torch.tensor([1.0, -0.5]), entropies, mask, alpha=0.5, kappa=2.0)
    # min(0.5 H, |A| / 2): row 0 [0.5, 0.5, 0.5], row 1 [0.25, 0.25, 0.25].
    torch.testing.assert_close(shaped, torch.tensor([[1.5, 1.5, 1.5], [-0.25, -0.25, -0.25]]))
    assert sums["entropy_advantage/mean_bonus"].tolist() == [1.25, 3.0]
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.0, -1.0]], requires_grad=True)
    old = logps.detach() - torch.tensor([[0.2, 0.4, 0.0], [0.1, 0.0, 0.0]])
    penalty, sums = kl_cov_step(logps, old, torch.tensor([1.0, -0.5]), mask, ratio=1.0, coef=2.0)
    torch.testing.assert_close(penalty, torch.tensor(2.0 * (0.2 + 0.4 + 0.1) / 3))  # every valid token selected
    assert sums["kl_cov/frac_tokens"].tolist() == [3.0, 3.0]
    penalty.backward()
    assert (logps.grad[mask.bool()] != 0).all() and (logps.grad[~mask.bool()] == 0).all()


def test_mode_entropy_sums_leave_cross_rows_out():
    entropies = torch.tensor([[1.0, 3.0], [2.0, 2.0], [5.0, 5.0], [7.0, 7.0]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]])
    sums = mode_entropy_sums(entropies, mask, context=torch.tensor([0, 1, 1, 0]), is_cross=torch.tensor([0, 0, 1, 1]))
    assert sums["policy_split/normal/entropy"].tolist() == [4.0, 2.0]
    assert sums["policy_split/high_entropy/entropy"].tolist() == [2.0, 1.0]


def test_outside_reward_range_ignores_nan_and_float_noise():
    rewards = torch.tensor([0.0, 1.0 + 1e-9, float("nan"), 1.01, -0.5])
    assert outside_reward_range(rewards, (0.0, 1.0)).tolist() == [False, False, False, True, True]
