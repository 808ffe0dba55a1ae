"""Policy Split's protocol options and drift guards (issue 21): the authors' completions per mode, truncated importance
weights on cross rows, the adaptive eta_high; hand-computed values for the math, the tiny model for the trainer."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from test_policy_split_trainer import (
    BATCH,
    NUM_GENERATIONS,
    first_batch,
    first_batch_with_rewards,
    make_config,
    make_trainer,
)
from tiny import trainer_logps

from trl_policysplit import PolicySplitConfig
from trl_policysplit.functional import adapted_coefficient, cross_importance_weights, inter_mode_kl_penalty
from trl_policysplit.policy_split_trainer import BASE_ADVANTAGE_KEY, CONTEXT_KEY, ETA_HIGH_FILE, IS_CROSS_KEY

# ------------------------------------------------------------------------------------------------------------------
# Functional core, hand-computed


def test_token_truncated_weights_are_the_capped_per_token_ratio():
    sampled = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.3, -0.3]])
    trained = torch.tensor([[-1.5, -1.0, -9.0], [-0.3, -1.3, -0.3]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    weights = cross_importance_weights(sampled, trained, mask, "token_truncate", cap=2.0)
    # exp(-0.5) = 0.6065, exp(1.0) = 2.718 capped at 2, an invalid token 1; exp(0) = 1, exp(-1) = 0.3679.
    expected = torch.tensor([[0.60653066, 2.0, 1.0], [1.0, 0.36787944, 1.0]])
    torch.testing.assert_close(weights, expected)


def test_sequence_truncated_weights_are_one_capped_product_per_row():
    sampled = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.3, -0.3]])
    trained = torch.tensor([[-1.5, -1.0, -9.0], [-0.3, -1.3, -0.3]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    weights = cross_importance_weights(sampled, trained, mask, "sequence_truncate", cap=2.0)
    # Row 0: exp(-0.5 + 1.0) = exp(0.5) = 1.6487 on its valid tokens; row 1: exp(-1.0) = 0.3679 on every token.
    expected = torch.tensor([[1.64872127, 1.64872127, 1.0], [0.36787944] * 3])
    torch.testing.assert_close(weights, expected)
    assert cross_importance_weights(sampled, trained, mask, "sequence_truncate", cap=1.5)[0, 0].item() == 1.5


def test_no_importance_sampling_is_weight_one_and_bad_values_raise():
    logps = torch.randn(2, 3)
    assert torch.equal(cross_importance_weights(logps, logps - 5, torch.ones(2, 3), "none"), torch.ones(2, 3))
    with pytest.raises(ValueError, match="level must be one of"):
        cross_importance_weights(logps, logps, torch.ones(2, 3), "token")
    with pytest.raises(ValueError, match="cap must be > 0"):
        cross_importance_weights(logps, logps, torch.ones(2, 3), "token_truncate", cap=0.0)


def test_inter_mode_kl_penalty_is_minus_coef_times_the_log_ratio_to_the_normal_mode():
    surprisal_normal = torch.tensor([[2.0, 0.5, 9.0]])
    surprisal_high = torch.tensor([[1.0, 1.5, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    # log p_HE - log p_normal = s_normal - s_HE = [1.0, -1.0]: the token the HE mode prefers is pushed down.
    penalty = inter_mode_kl_penalty(surprisal_normal, surprisal_high, mask, coef=0.5)
    torch.testing.assert_close(penalty, torch.tensor([[-0.5, 0.5, 0.0]]))
    assert not inter_mode_kl_penalty(surprisal_normal, surprisal_high, mask, coef=0.0).any()
    with pytest.raises(ValueError, match="coef must be >= 0"):
        inter_mode_kl_penalty(surprisal_normal, surprisal_high, mask, coef=-1.0)


@pytest.mark.parametrize(
    ("coefficient", "measured", "target", "rate", "expected"),
    [
        (0.2, 0.3, 0.2, 1.0, 0.16),  # KL 1.5x the target: error 0.5 clipped to 0.2, eta shrinks by 20 %
        (0.2, 0.1, 0.2, 1.0, 0.24),  # half the target: error -0.5 clipped to -0.2, eta grows by 20 %
        (0.2, 0.22, 0.2, 1.0, 0.18),  # 10 % above: error 0.1
        (0.2, 0.3, 0.2, 0.5, 0.18),  # half the gain
        (0.2, 0.2, 0.2, 1.0, 0.2),  # on target: unchanged
        (0.9, 0.0, 0.2, 1.0, 1.0),  # 0.9 * 1.2 = 1.08, at most the maximum 1.0
        (0.2, math.nan, 0.2, 1.0, 0.2),  # no HE completion in the batch: unchanged
    ],
)
def test_adapted_coefficient_is_ppos_controller_turned_around(coefficient, measured, target, rate, expected):
    assert adapted_coefficient(coefficient, measured, target, rate, maximum=1.0) == pytest.approx(expected)


def test_adapted_coefficient_rejects_settings_that_cannot_hold_a_target():
    with pytest.raises(ValueError, match="target_kl must be > 0"):
        adapted_coefficient(0.2, 0.1, 0.0)
    with pytest.raises(ValueError, match="keep the coefficient positive"):
        adapted_coefficient(0.2, 0.1, 0.2, rate=5.0)


# ------------------------------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"completions_per_mode": "double"}, "completions_per_mode must be one of"),
        ({"cross_importance_sampling": "token"}, "cross_importance_sampling must be one of"),
        ({"cross_importance_sampling": "token_truncate", "share_rollouts": False}, "share_rollouts=True"),
        ({"cross_importance_cap": 0.0}, "cross_importance_cap must be > 0"),
        ({"eta_high_target_kl": -0.1}, "eta_high_target_kl must be >= 0"),
        ({"eta_high_target_kl": 0.2, "eta_high": 0.0}, "set eta_high > 0"),
        ({"eta_high_target_kl": 0.2, "eta_high_adapt_rate": 5.0}, "eta_high_adapt_rate must be in"),
        ({"eta_high_target_kl": 0.2, "eta_high": 0.5, "eta_high_max": 0.4}, "must be >= eta_high"),
        ({"mode_kl_coef": -0.1}, "mode_kl_coef must be >= 0"),
        ({"num_generations": 3}, "completions_per_mode='num_generations'"),
    ],
)
def test_wrong_guard_settings_name_the_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(tmp_path, **overrides)


def test_the_authors_sample_count_accepts_an_odd_num_generations(tmp_path):
    config = make_config(
        tmp_path, completions_per_mode="num_generations", num_generations=3, per_device_train_batch_size=6
    )
    assert isinstance(config, PolicySplitConfig) and config.num_generations == 3


# ------------------------------------------------------------------------------------------------------------------
# The authors' completions per mode


def test_num_generations_per_mode_doubles_the_completions_and_keeps_the_prompts(tiny_model_dir, tmp_path):
    half = make_trainer(tiny_model_dir, tmp_path / "half")
    trainer = make_trainer(tiny_model_dir, tmp_path / "full", completions_per_mode="num_generations")
    assert trainer.num_generations == 2 * NUM_GENERATIONS and trainer.args.num_generations == 2 * NUM_GENERATIONS
    # Prompts per generation batch and updates per generation as the user set them.
    for name in ("generation_batch_size", "steps_per_generation", "gradient_accumulation_steps"):
        assert getattr(trainer.args, name) == 2 * getattr(half.args, name), name
    assert trainer.args.per_device_train_batch_size == half.args.per_device_train_batch_size
    rows, batch = first_batch(trainer)
    _, half_batch = first_batch(half)
    prompts = {json.dumps(row["prompt"]) for row in rows}
    assert len(prompts) == BATCH // NUM_GENERATIONS  # as many questions as GRPO's batch holds
    generated = batch["completion_ids"].size(0) // 2
    assert generated == 2 * (half_batch["completion_ids"].size(0) // 2)
    context = batch[CONTEXT_KEY][:generated]
    group = 2 * NUM_GENERATIONS
    for question in range(generated // group):
        own = context[question * group : (question + 1) * group]
        assert own.tolist() == [0] * NUM_GENERATIONS + [1] * NUM_GENERATIONS  # num_generations per mode
    assert batch[IS_CROSS_KEY][generated:].all() and not batch[IS_CROSS_KEY][:generated].any()


def test_num_generations_per_mode_trains_the_same_optimizer_steps_and_logs_per_mode_counts(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, completions_per_mode="num_generations", max_steps=2)
    trainer.train()
    assert trainer.state.global_step == 2
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [1, 2]
    for entry in logs:
        for mode in ("normal", "high_entropy"):
            assert entry[f"policy_split/{mode}/completions"] == BATCH
            assert entry[f"policy_split/{mode}/train_sequences"] == 2 * BATCH


# ------------------------------------------------------------------------------------------------------------------
# Truncated importance weights on cross rows


@pytest.mark.parametrize("level", ["token_truncate", "sequence_truncate"])
def test_cross_rows_advantages_carry_the_truncated_ratio_and_own_rows_do_not(tiny_model_dir, tmp_path, level):
    # eta_high = 0: every row's advantage is GRPO's, so the cross rows' ones are exactly base * w.
    trainer = make_trainer(
        tiny_model_dir, tmp_path, eta_high=0.0, cross_importance_sampling=level, cross_importance_cap=1.02
    )
    _, batch = first_batch(trainer)
    base = batch[BASE_ADVANTAGE_KEY].unsqueeze(1)
    mask = batch["completion_mask"].bool()
    logps = trainer_logps(trainer, batch)  # generated rows under their own prompt, then the cross pairs
    expected = cross_importance_weights(logps[:BATCH], logps[BATCH:], mask[:BATCH], level, cap=1.02)
    advantages = batch["advantages"]
    torch.testing.assert_close(advantages[:BATCH][mask[:BATCH]], base[:BATCH].expand(-1, mask.size(1))[mask[:BATCH]])
    got = advantages[BATCH:][mask[BATCH:]]
    torch.testing.assert_close(got, (base[BATCH:] * expected)[mask[BATCH:]])
    weights = expected[mask[:BATCH]]
    # The weights differ from 1 (the product is visible) and the configured cap bounds them; where the cap binds
    # depends on the sampled rows, so that is checked on hand-made values above.
    assert (weights - 1.0).abs().max() > 1e-3 and (weights <= 1.02).all()
    if level == "sequence_truncate":
        assert all(len(set(row[m].tolist())) == 1 for row, m in zip(expected, mask[:BATCH], strict=True))


def test_cross_importance_weights_are_logged_per_context(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, cross_importance_sampling="token_truncate")
    trainer.train()
    for entry in [entry for entry in trainer.state.log_history if "loss" in entry]:
        for context in ("normal", "high_entropy"):
            weight = entry[f"policy_split/cross_is_weight/{context}_context"]
            capped = entry[f"policy_split/cross_is_capped_frac/{context}_context"]
            assert 0.0 < weight <= 2.0 and weight != 1.0 and 0.0 <= capped <= 1.0


# ------------------------------------------------------------------------------------------------------------------
# Adaptive eta_high


@pytest.mark.parametrize(("target", "maximum"), [(0.001, 1.0), (1.0, 0.8), (1.0, None)])
def test_eta_high_follows_the_controller_on_the_logged_kl(tiny_model_dir, tmp_path, target, maximum):
    # The tiny model's modes are far below 1 nat apart: with target 1.0 eta grows each step, up to eta_high_max (by
    # default its start value, so it stays). Target 0.001 is near the KL, which may fall on either side of it.
    trainer = make_trainer(
        tiny_model_dir, tmp_path, eta_high=0.5, eta_high_target_kl=target, eta_high_max=maximum, max_steps=3
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    eta = 0.5
    for entry in logs:
        eta = adapted_coefficient(eta, entry["policy_split/kl_high_entropy_to_normal"], target, 1.0, maximum or 0.5)
        assert entry["policy_split/eta_high"] == pytest.approx(eta, rel=1e-5)
    assert trainer.eta_high == pytest.approx(eta, rel=1e-5)
    logged = [entry["policy_split/eta_high"] for entry in logs]
    if maximum == 1.0:
        assert all(value != 0.5 for value in logged)  # the controller acted at every step
    elif maximum == 0.8:
        assert logged == pytest.approx([0.6, 0.72, 0.8])  # 0.864 at the third step, capped
    else:
        assert logged == [0.5, 0.5, 0.5]  # wants to grow, held at its start value


def test_fixed_eta_high_is_logged_unchanged(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, eta_high=0.5)
    trainer.train()
    assert [e["policy_split/eta_high"] for e in trainer.state.log_history if "loss" in e] == [0.5, 0.5]


def test_the_adapted_eta_scales_the_high_entropy_bonus(tiny_model_dir, tmp_path):
    # No clamp, eta_normal 0: the HE-context bonus is linear in eta, so the adapted run's bonus is the fixed run's
    # times eta_used / eta_high on the same first batch (same seed, same completions).
    fixed = make_trainer(tiny_model_dir, tmp_path / "fixed", eta_high=0.5, kappa=0.0)
    adapted = make_trainer(
        tiny_model_dir, tmp_path / "adapted", eta_high=0.5, kappa=0.0, eta_high_target_kl=1e-4, eta_high_max=1.0
    )
    torch.manual_seed(0)
    _, fixed_batch = first_batch(fixed)
    torch.manual_seed(0)
    _, adapted_batch = first_batch(adapted)
    assert torch.equal(fixed_batch["completion_ids"], adapted_batch["completion_ids"])
    scale = adapted.eta_high / 0.5
    assert scale != 1.0
    mask = fixed_batch["completion_mask"].bool()

    def bonus(batch):
        return (batch["advantages"] - batch[BASE_ADVANTAGE_KEY].unsqueeze(1))[mask]

    assert bonus(fixed_batch).abs().sum() > 0
    torch.testing.assert_close(bonus(adapted_batch), bonus(fixed_batch) * scale, atol=1e-6, rtol=1e-4)


def test_the_adapted_eta_is_saved_with_a_checkpoint_and_resumed(tiny_model_dir, tmp_path):
    settings = {"eta_high": 0.5, "eta_high_target_kl": 0.001, "eta_high_max": 1.0, "save_strategy": "steps"}
    settings["save_steps"] = 2
    trainer = make_trainer(tiny_model_dir, tmp_path, **settings)
    trainer.train()
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    with open(os.path.join(checkpoint, ETA_HIGH_FILE)) as handle:
        saved = json.load(handle)["eta_high"]
    assert saved == pytest.approx(trainer.eta_high) and saved != 0.5
    resumed = make_trainer(tiny_model_dir, tmp_path, max_steps=3, **settings)
    resumed.train(resume_from_checkpoint=checkpoint)
    last = [entry for entry in resumed.state.log_history if "loss" in entry][-1]
    assert last["step"] == 3
    expected = adapted_coefficient(saved, last["policy_split/kl_high_entropy_to_normal"], 0.001, 1.0, 1.0)
    assert last["policy_split/eta_high"] == pytest.approx(expected, rel=1e-5)


def test_asymmetric_advantages_and_dipo_group_the_authors_sample_count(tiny_model_dir, tmp_path):
    from tiny import length_reward

    from trl_policysplit.functional import asym_advantages

    settings = {
        "completions_per_mode": "num_generations",
        "asymmetric_advantages": True,
        "cross_importance_sampling": "token_truncate",
        "eta_high_target_kl": 0.01,
    }
    trainer = make_trainer(tiny_model_dir, tmp_path / "asym", reward_funcs=length_reward, **settings)
    _, batch, rewards_per_func = first_batch_with_rewards(trainer)
    rewards = rewards_per_func[:, 0]  # one reward function of weight 1
    group = 2 * NUM_GENERATIONS  # num_generations per mode, both modes in one group
    expected = asym_advantages(rewards, group, 0.9, 0.4, reward_range=None)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(batch[BASE_ADVANTAGE_KEY][: rewards.numel()], expected)
    # The whole combination (DiPO's queue takes 2x the completions per batch) trains.
    combined = make_trainer(
        tiny_model_dir, tmp_path / "all", reward_funcs=length_reward, perplexity_reallocation=True, **settings
    )
    combined.train()
    assert combined.state.global_step == 2
    sizes = [e["dipo/queue_size"] for e in combined.state.log_history if "dipo/queue_size" in e]
    assert sizes == [2 * BATCH, 4 * BATCH]  # the last 2 generation batches of 16 completions each


# ------------------------------------------------------------------------------------------------------------------
# The restoring force: an inter-mode KL penalty on high-entropy-context rows


def test_the_penalty_acts_on_high_entropy_context_rows_only_and_outside_the_clamp(tiny_model_dir, tmp_path):
    # eta_high 0: without the penalty every advantage is GRPO's, so the difference is exactly the penalty.
    trainer = make_trainer(tiny_model_dir, tmp_path, eta_high=0.0, mode_kl_coef=0.5, kappa=1.0)
    _, batch = first_batch(trainer)
    base = batch[BASE_ADVANTAGE_KEY].unsqueeze(1)
    mask = batch["completion_mask"].bool()
    logps = trainer_logps(trainer, batch)  # generated rows under their own prompt, then the cross pairs
    s_own, s_cross = -logps[:BATCH], -logps[BATCH:]
    context = batch[CONTEXT_KEY].bool()
    high = context[:BATCH].unsqueeze(1)  # the generated row is an HE completion
    # Q2 (HE completion, HE prompt): normal surprisal is the cross one; Q4 (normal completion, HE prompt): the own one.
    expected_own = torch.where(high, -0.5 * (s_cross - s_own), torch.zeros_like(s_own))
    expected_cross = torch.where(high, torch.zeros_like(s_own), -0.5 * (s_own - s_cross))
    got = batch["advantages"] - base
    torch.testing.assert_close(got[:BATCH][mask[:BATCH]], expected_own[mask[:BATCH]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got[BATCH:][mask[BATCH:]], expected_cross[mask[BATCH:]], atol=1e-6, rtol=1e-5)
    assert not got[~context][mask[~context]].any()  # normal-context rows keep GRPO's advantage
    # Not clamped: it is there on groups whose advantage is 0 as well.
    zero_advantage = (base.squeeze(1) == 0) & context
    if zero_advantage.any():
        assert got[zero_advantage][mask[zero_advantage]].abs().sum() > 0
    assert got[context][mask[context]].abs().sum() > 0
