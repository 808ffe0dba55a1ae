"""Drop-in use and fidelity to the authors' runs: a plain GRPOConfig, any scored rewards under AsymGRPO, the
covariance baselines under their authors' update schedule, and high-entropy prompts that differ by the instruction
only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny import conversational_dataset, digit_reward, length_reward, trainer_settings
from transformers import AutoTokenizer
from trl import GRPOConfig

from trl_policysplit import (
    AdvantageShapingConfig,
    AdvantageShapingTrainer,
    AsymGRPOConfig,
    AsymGRPOTrainer,
    DiPOConfig,
    DiPOTrainer,
    PolicySplitConfig,
    PolicySplitTrainer,
)
from trl_policysplit.functional import asym_advantages
from trl_policysplit.policy_split_trainer import CONTEXT_KEY

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
GROUP = 4
BATCH = 8


def _changed_parameters(trainer, before: dict[str, torch.Tensor]) -> int:
    return sum(not torch.equal(before[name], p.detach()) for name, p in trainer.model.named_parameters())


# ---------------------------------------------------------------------------------------------------------------
# A plain GRPOConfig: swap only the trainer class


@pytest.mark.parametrize(
    ("trainer_class", "config_class", "method_defaults"),
    [
        (PolicySplitTrainer, PolicySplitConfig, {"eta_high": 0.0, "share_rollouts": True}),
        (AsymGRPOTrainer, AsymGRPOConfig, {"asymmetric_advantages": True, "beta_pos": 0.9}),
        (DiPOTrainer, DiPOConfig, {"perplexity_reallocation": True, "ppl_alpha": 0.1}),
        (AdvantageShapingTrainer, AdvantageShapingConfig, {"asymmetric_advantages": False}),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_a_plain_grpo_config_is_upgraded_with_every_field_kept(
    trainer_class, config_class, method_defaults, tiny_model_dir, tmp_path
):
    args = GRPOConfig(**trainer_settings(tmp_path, learning_rate=3e-2, max_completion_length=6, temperature=0.9))
    trainer = trainer_class(
        model=tiny_model_dir, reward_funcs=length_reward, args=args, train_dataset=conversational_dataset()
    )
    assert type(trainer.args) is config_class
    # (Policy Split splits each micro-batch in two by default, keeping the generation batch: see test_cost_floor.)
    for name in ("learning_rate", "max_completion_length", "temperature", "generation_batch_size", "output_dir"):
        assert getattr(trainer.args, name) == getattr(args, name), name
    for name, value in method_defaults.items():
        assert getattr(trainer.args, name) == value, name
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    assert _changed_parameters(trainer, before) > 0


def test_a_plain_grpo_config_is_still_validated_for_the_method(tiny_model_dir, tmp_path):
    args = GRPOConfig(**trainer_settings(tmp_path, per_device_train_batch_size=6, num_generations=3))
    with pytest.raises(ValueError, match="num_generations must be even for Policy Split"):
        PolicySplitTrainer(model=tiny_model_dir, reward_funcs=digit_reward, args=args)


def test_a_sibling_method_config_is_refused_rather_than_silently_reinterpreted(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="needs `args` to be a AsymGRPOConfig or a GRPOConfig, got DiPOConfig"):
        AsymGRPOTrainer(model=tiny_model_dir, reward_funcs=digit_reward, args=DiPOConfig(**trainer_settings(tmp_path)))


# ---------------------------------------------------------------------------------------------------------------
# AsymGRPO on any scored rewards


def spread_reward(completions, **kwargs) -> list[float]:
    """Rewards in [-2, 3] by position, as a reward model or penalties give: groups [-2, 3, 0.5, 1], [-1, -1, 2, -1]."""
    pattern = [-2.0, 3.0, 0.5, 1.0, -1.0, -1.0, 2.0, -1.0]
    return [pattern[i % len(pattern)] for i in range(len(completions))]


def test_asym_grpo_default_trains_on_rewards_outside_zero_one_with_the_paper_sign_rule(tiny_model_dir, tmp_path):
    trainer = AsymGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=spread_reward,
        args=AsymGRPOConfig(**trainer_settings(tmp_path, per_device_train_batch_size=BATCH, num_generations=GROUP)),
        train_dataset=conversational_dataset(),
    )
    assert trainer.args.reward_range is None
    trainer.model.train()
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    rewards = torch.tensor(spread_reward([None] * BATCH))
    advantages = batch["advantages"]
    group_mean = rewards.reshape(-1, GROUP).mean(dim=1).repeat_interleave(GROUP)
    assert torch.equal(advantages > 0, rewards > group_mean)
    assert torch.equal(advantages < 0, rewards < group_mean)
    torch.testing.assert_close(advantages, asym_advantages(rewards, GROUP, 0.9, 0.4, None))
    # Each group's best completion gets the paper's A+ for its success rate p = mean of the group-scaled rewards.
    p = (0.0 + 1.0 + 0.5 + 0.6) / 4
    assert advantages[1].item() == pytest.approx(((1 - p) / p) ** 0.9, rel=1e-5)
    trainer.train()
    assert trainer.state.global_step == 2


# ---------------------------------------------------------------------------------------------------------------
# Clip-Cov and KL-Cov under their authors' update schedule


def _recipe_updates_per_rollout(name: str) -> int:
    raw = yaml.safe_load((RECIPES / "baselines" / name).read_text())
    return raw["steps_per_generation"] // raw["gradient_accumulation_steps"] * raw.get("num_iterations", 1)


def _run_schedule(tiny_model_dir, tmp_path, **overrides) -> list[dict]:
    """One rollout of the recipe's number of updates on the tiny model: one optimizer update per logged step."""
    updates = _recipe_updates_per_rollout(f"{overrides['policy_loss']}_qwen3_1.7b_math.yaml")
    assert updates == 8
    settings = trainer_settings(
        tmp_path,
        per_device_train_batch_size=BATCH,
        num_generations=GROUP,
        gradient_accumulation_steps=1,
        steps_per_generation=updates,
        max_steps=updates,
        **overrides,
    )
    trainer = AdvantageShapingTrainer(
        model=tiny_model_dir,
        reward_funcs=length_reward,
        args=AdvantageShapingConfig(**settings),
        train_dataset=conversational_dataset(64),
    )
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_kl_cov_penalty_acts_from_the_second_update_of_a_rollout_without_ppo_clip(tiny_model_dir, tmp_path):
    # A tight clip range that PPO would hit on later updates: KL-Cov must not apply it.
    logs = _run_schedule(tiny_model_dir, tmp_path, policy_loss="kl_cov", kl_cov_ratio=0.25, epsilon=1e-3)
    penalties = [entry["kl_cov/penalty"] for entry in logs]
    assert len(penalties) == 8
    assert penalties[0] < 1e-6  # on-policy first update: logp == old logp
    assert all(value > 1e-4 for value in penalties[1:]), penalties
    assert all(entry["clip_ratio/region_mean"] == 0.0 for entry in logs)


def test_kl_cov_can_keep_the_ppo_clip(tiny_model_dir, tmp_path):
    logs = _run_schedule(
        tiny_model_dir, tmp_path, policy_loss="kl_cov", kl_cov_ratio=0.25, epsilon=1e-3, kl_cov_keep_ppo_clip=True
    )
    assert logs[0]["clip_ratio/region_mean"] == 0.0
    assert max(entry["clip_ratio/region_mean"] for entry in logs[1:]) > 0.0


def test_clip_cov_detaches_tokens_under_the_recipe_schedule_and_clip_range(tiny_model_dir, tmp_path):
    raw = yaml.safe_load((RECIPES / "baselines" / "clip_cov_qwen3_1.7b_math.yaml").read_text())
    logs = _run_schedule(
        tiny_model_dir,
        tmp_path,
        policy_loss="clip_cov",
        epsilon=raw["epsilon"],
        epsilon_high=raw["epsilon_high"],
        clip_cov_ratio=0.05,  # the tiny model's 64 tokens per update: the recipe's 2e-4 would round to one token
        clip_cov_lb=-1e9,  # a band the near-uniform tiny model has tokens in (the recipe's (1, 5) suits real models)
        clip_cov_ub=1e9,
    )
    assert all(entry["clip_cov/frac_tokens"] > 0 for entry in logs)


def test_kl_cov_without_clip_needs_a_clipped_loss_type(tmp_path):
    with pytest.raises(ValueError, match="kl_cov_keep_ppo_clip=True"):
        AdvantageShapingConfig(**trainer_settings(tmp_path, policy_loss="kl_cov", loss_type="cispo"))
    config = AdvantageShapingConfig(
        **trainer_settings(tmp_path, policy_loss="kl_cov", loss_type="cispo", kl_cov_keep_ppo_clip=True)
    )
    assert config.loss_type == "cispo"


# ---------------------------------------------------------------------------------------------------------------
# High-entropy prompts under a template that injects a default system prompt

SMOL_DEFAULT = "You are a helpful assistant named Tiny."
SMOL_STYLE_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + SMOL_DEFAULT + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture()
def smol_style_model_dir(tiny_model_dir, tmp_path) -> str:
    directory = tmp_path / "smol-style"
    shutil.copytree(tiny_model_dir, directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = SMOL_STYLE_TEMPLATE
    tokenizer.save_pretrained(directory)
    return str(directory)


def test_high_entropy_rows_keep_the_template_default_system_prompt(smol_style_model_dir, tmp_path):
    trainer = PolicySplitTrainer(
        model=smol_style_model_dir,
        reward_funcs=digit_reward,
        args=PolicySplitConfig(**trainer_settings(tmp_path, per_device_train_batch_size=BATCH, num_generations=GROUP)),
        train_dataset=conversational_dataset(),
    )
    assert trainer.default_system_prompt == SMOL_DEFAULT
    trainer.model.train()
    rows = next(iter(trainer.get_train_dataloader()))
    batch = trainer._generate_and_score_completions(rows)
    tokenizer = trainer.processing_class
    instruction = trainer.args.high_entropy_prompt
    checked_without_system = 0
    for i in range(2 * BATCH):  # generated rows, then their cross pairs
        text = tokenizer.decode(batch["prompt_ids"][i][batch["prompt_mask"][i].bool()])
        normal = tokenizer.apply_chat_template(rows[i % BATCH]["prompt"], tokenize=False, add_generation_prompt=True)
        if batch[CONTEXT_KEY][i] == 0:
            assert text == normal
            continue
        # The high-entropy prompt is the normal one with "<instruction>\n\n" inserted once, nothing else.
        assert text.count(instruction) == 1
        assert text.replace(instruction + "\n\n", "", 1) == normal
        if rows[i % BATCH]["prompt"][0]["role"] != "system":
            assert SMOL_DEFAULT in text
            checked_without_system += 1
    assert checked_without_system > 0
