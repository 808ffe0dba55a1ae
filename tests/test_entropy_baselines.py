"""Clip-Cov, KL-Cov and the entropy advantage wired into every trainer: the loss hook and short runs."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import conversational_dataset, digit_reward, generate_with_rewards, length_reward, trainer_settings

from trl_policysplit import (
    AdvantageShapingConfig,
    AdvantageShapingTrainer,
    AsymGRPOConfig,
    AsymGRPOTrainer,
    PolicySplitConfig,
    PolicySplitTrainer,
)
from trl_policysplit.functional import kl_cov_mask
from trl_policysplit.shaping_trainer import LossRecord

# A band wide enough that the near-uniform tiny model has candidates (the published band (1, 5) suits real models).
WIDE_BAND = {"clip_cov_lb": -1e9, "clip_cov_ub": 1e9}


def build(trainer_class, config_class, model_dir, tmp_path, reward_funcs=length_reward, **overrides):
    trainer = trainer_class(
        model=model_dir,
        reward_funcs=reward_funcs,
        args=config_class(**trainer_settings(tmp_path, **overrides)),
        train_dataset=conversational_dataset(),
    )
    trainer.model.train()  # metrics go to "train", as during training
    return trainer


def synthetic_micro_batch(seed: int = 0):
    """Log-probs that need a gradient, old log-probs that differ from them, advantages and a padded mask."""
    generator = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(4, 6, generator=generator) * 3).requires_grad_()
    old = logps.detach() + 0.1 * torch.randn(4, 6, generator=generator)
    mask = torch.tensor([[1] * 6, [1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3])
    inputs = {
        "advantages": torch.tensor([1.5, -0.5, 0.8, -1.2]),
        "completion_mask": mask,
        "old_per_token_logps": old,
    }
    entropies = torch.rand(4, 6, generator=generator) * 2
    return inputs, logps, entropies, mask


def test_clip_cov_detaches_exactly_the_selected_tokens(tiny_model_dir, tmp_path):
    trainer = build(
        AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path,
        policy_loss="clip_cov", clip_cov_ratio=0.25, epsilon=10.0, **WIDE_BAND,
    )  # fmt: skip
    inputs, logps, entropies, mask = synthetic_micro_batch()
    shaped = trainer._shape_loss(LossRecord(inputs), logps, entropies)
    shaped.sum().backward()
    detached = (logps.grad == 0) & mask.bool()
    # 19 valid tokens: int(0.25 * 19) = 4 detached, every other valid token keeps its gradient of 1.
    assert int(detached.sum()) == 4
    assert torch.equal(logps.grad[mask.bool() & ~detached], torch.ones(19 - 4))
    torch.testing.assert_close(shaped.detach(), logps.detach())  # the loss value is unchanged
    assert trainer._metrics["train"]["clip_cov/frac_tokens"] == [pytest.approx(4 / 19)]


def test_clip_cov_skips_tokens_ppo_already_clips(tiny_model_dir, tmp_path):
    trainer = build(
        AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path,
        policy_loss="clip_cov", clip_cov_ratio=1.0, epsilon=0.2, **WIDE_BAND,
    )  # fmt: skip
    inputs, logps, entropies, mask = synthetic_micro_batch()
    inputs["old_per_token_logps"] = logps.detach().clone()
    inputs["old_per_token_logps"][0, :3] -= 1.0  # ratio e > 1.2 with A > 0: clipped by PPO
    trainer._shape_loss(LossRecord(inputs), logps, entropies).sum().backward()
    assert torch.equal(logps.grad[0, :3], torch.ones(3))  # left to PPO's clip, not drawn by Clip-Cov
    assert int(((logps.grad == 0) & mask.bool()).sum()) == 19 - 3


def test_kl_cov_penalizes_only_the_selected_tokens(tiny_model_dir, tmp_path):
    trainer = build(
        AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path,
        policy_loss="kl_cov", kl_cov_ratio=0.2, kl_cov_coef=0.5,
    )  # fmt: skip
    trainer.current_gradient_accumulation_steps = 2
    inputs, logps, entropies, mask = synthetic_micro_batch()
    record = LossRecord(inputs)
    shaped = trainer._shape_loss(record, logps, entropies)
    assert shaped is logps  # KL-Cov leaves the policy term alone
    selected = kl_cov_mask(logps, inputs["advantages"], mask, 0.2)
    assert int(selected.sum()) == 3  # int(0.2 * 19)
    gap = (logps.detach() - inputs["old_per_token_logps"]).abs()
    expected = 0.5 * gap[selected].sum() / 19 / 2
    torch.testing.assert_close(record.penalty.detach(), expected)
    record.penalty.backward()
    assert torch.equal(logps.grad != 0, selected)


def test_entropy_advantage_adds_the_clamped_term(tiny_model_dir, tmp_path):
    trainer = build(
        AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path,
        entropy_advantage_alpha=0.4, entropy_advantage_kappa=2.0,
    )  # fmt: skip
    inputs, logps, _, mask = synthetic_micro_batch()
    entropies = torch.tensor([[1.0, 5.0, 0.0, 2.0, 1.0, 1.0]]).repeat(4, 1)
    assert trainer._shape_loss(LossRecord(inputs), logps, entropies) is logps
    # Row 0, A = 1.5: min(0.4 * H, 0.75) = [0.4, 0.75, 0, 0.75, 0.4, 0.4]; row 1, A = -0.5: min(0.4 H, 0.25).
    torch.testing.assert_close(inputs["advantages"][0], torch.tensor([1.9, 2.25, 1.5, 2.25, 1.9, 1.9]))
    torch.testing.assert_close(inputs["advantages"][1], torch.tensor([-0.25, -0.25, -0.5, -0.25, -0.25, -0.25]))


def test_the_hook_never_edits_the_buffered_batch(tiny_model_dir, tmp_path):
    trainer = build(
        AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path,
        entropy_advantage_alpha=0.4, policy_loss="kl_cov",
    )  # fmt: skip
    trainer.model.train()
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    before = batch["advantages"].clone()
    trainer.current_gradient_accumulation_steps = 1
    trainer._compute_loss(trainer.model, batch)
    assert torch.equal(batch["advantages"], before)  # num_iterations > 1 reuses it: shaping must not accumulate
    assert trainer._call is None  # no record outlives its call


RUNS = {
    "clip-cov": (AdvantageShapingTrainer, AdvantageShapingConfig, {"policy_loss": "clip_cov", "clip_cov_ratio": 0.1}),
    "kl-cov": (AdvantageShapingTrainer, AdvantageShapingConfig, {"policy_loss": "kl_cov", "num_iterations": 2}),
    "entropy-advantage": (AdvantageShapingTrainer, AdvantageShapingConfig, {"entropy_advantage_alpha": 0.4}),
    "asym-clip-cov": (AsymGRPOTrainer, AsymGRPOConfig, {"policy_loss": "clip_cov", "clip_cov_ratio": 0.1}),
    "policy-split-kl-cov": (PolicySplitTrainer, PolicySplitConfig, {"policy_loss": "kl_cov", "num_iterations": 2}),
    "policy-split-entropy-advantage": (PolicySplitTrainer, PolicySplitConfig, {"entropy_advantage_alpha": 0.4}),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_two_steps_train_and_log_the_baseline_metrics(tiny_model_dir, tmp_path, name):
    trainer_class, config_class, overrides = RUNS[name]
    overrides = {**overrides, **(WIDE_BAND if "clip_cov" in overrides.values() else {})}
    reward = digit_reward if config_class is AsymGRPOConfig else length_reward
    trainer = build(trainer_class, config_class, tiny_model_dir, tmp_path, reward_funcs=reward, **overrides)
    before = {key: value.detach().clone() for key, value in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[key], value) for key, value in trainer.model.named_parameters())
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert math.isfinite(entry["loss"])
        if "policy_loss" in overrides:
            loss = overrides["policy_loss"]
            ratio = overrides.get(f"{loss}_ratio", config_class.kl_cov_ratio)
            assert 0 < entry[f"{loss}/frac_tokens"] <= max(ratio, 1 / 8) + 1e-6  # at least one token of >= 8
            assert math.isfinite(entry[f"{loss}/mean_covariance"])
        else:
            assert entry["entropy_advantage/mean_bonus"] > 0


def test_with_every_flag_off_the_advantages_are_grpos(tiny_model_dir, tmp_path):
    """The CLI's `grpo` trainer is AdvantageShapingTrainer: with its flags off it must be TRL's GRPO."""
    trainer = build(AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path)
    batch, rewards_per_func = generate_with_rewards(trainer, next(iter(trainer.get_train_dataloader())))
    rewards = rewards_per_func[:, 0].view(-1, 4)
    expected = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(batch["advantages"], expected.flatten())
    assert batch["advantages"].dim() == 1 and trainer._call is None
