"""Policy Split's GRPO micro-batch under a `deepspeed=` config: "auto" values follow the adjusted batch sizes, fixed
ones that no longer match are a ValueError naming the fix (not transformers' later mismatch naming unset values)."""

from __future__ import annotations

import pytest
from tiny import trainer_settings

from trl_policysplit import PolicySplitConfig, PolicySplitTrainer

pytest.importorskip("deepspeed")


def deepspeed_config(micro_batch: int | str) -> dict:
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "zero_optimization": {"stage": 2},
    }


def adjusted_args(tmp_path, micro_batch: int | str) -> PolicySplitConfig:
    settings = trainer_settings(tmp_path, per_device_train_batch_size=8, num_generations=4)
    args = PolicySplitConfig(**settings, deepspeed=deepspeed_config(micro_batch))
    trainer = PolicySplitTrainer.__new__(PolicySplitTrainer)  # the arguments hook alone: no accelerator needed
    return trainer._trainer_args(args)


def test_auto_values_follow_the_kept_micro_batch(tmp_path):
    adjusted = adjusted_args(tmp_path, "auto")
    config = adjusted.hf_deepspeed_config.config
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"]) == (4, 2)
    assert config["train_batch_size"] == 8  # the optimizer batch is unchanged
    assert adjusted.deepspeed_plugin.hf_ds_config is adjusted.hf_deepspeed_config


def test_a_fixed_micro_batch_names_the_fix(tmp_path):
    fix = r'(?s)train_micro_batch_size_per_gpu=8 vs .*to "auto".*keep_grpo_micro_batch=False'
    with pytest.raises(ValueError, match=fix):
        adjusted_args(tmp_path, 8)
