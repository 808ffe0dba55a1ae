"""AsymGRPO and DiPO end to end on the tiny offline model, alone and inside Policy Split."""

from __future__ import annotations

import math
import os

import pytest
import torch
from tiny import conversational_dataset, trainer_logps, trainer_settings

from trl_policysplit import (
    AsymGRPOConfig,
    AsymGRPOTrainer,
    DiPOConfig,
    DiPOTrainer,
    PolicySplitConfig,
    PolicySplitTrainer,
)
from trl_policysplit.policy_split_trainer import BASE_ADVANTAGE_KEY
from trl_policysplit.shaping_trainer import PERPLEXITY_QUEUE_FILE

GROUP = 4
BATCH = 8  # two questions per generation batch
ALPHA = 0.1


def patterned_reward(completions, **kwargs) -> list[float]:
    """Rewards by position in the batch, so every batch has known groups: [1, 0, 0, 0] then [1, 1, 1, 0]."""
    pattern = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    return [pattern[i % len(pattern)] for i in range(len(completions))]


def all_wrong_reward(completions, **kwargs) -> list[float]:
    return [0.0] * len(completions)


def all_correct_reward(completions, **kwargs) -> list[float]:
    return [1.0] * len(completions)


def out_of_range_reward(completions, **kwargs) -> list[float]:
    return [2.0] + [0.0] * (len(completions) - 1)


def settings(tmp_path, **overrides) -> dict:
    return trainer_settings(tmp_path, **{"per_device_train_batch_size": BATCH, "num_generations": GROUP, **overrides})


def build(trainer_class, config_class, model_dir, tmp_path, reward_funcs=patterned_reward, **overrides):
    return trainer_class(
        model=model_dir,
        reward_funcs=reward_funcs,
        args=config_class(**settings(tmp_path, **overrides)),
        train_dataset=conversational_dataset(),
    )


def generation_batch(trainer) -> dict:
    trainer.model.train()
    rows = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(rows)


def perplexities(trainer, batch: dict) -> torch.Tensor:
    """exp(mean surprisal) of each completion, from the trainer's own log-probs (see `tiny.trainer_logps`)."""
    mask = batch["completion_mask"].float()
    return (-(trainer_logps(trainer, batch) * mask).sum(1) / mask.sum(1)).exp()


# Hand-computed asymmetric advantages of the pattern: p = 1/4 then p = 3/4.
ASYM_PATTERN = torch.tensor(
    [3**0.9, -((1 / 3) ** 0.4), -((1 / 3) ** 0.4), -((1 / 3) ** 0.4)]
    + [(1 / 3) ** 0.9, (1 / 3) ** 0.9, (1 / 3) ** 0.9, -(3**0.4)]
)


def test_asym_grpo_replaces_the_group_normalization(tiny_model_dir, tmp_path):
    trainer = build(AsymGRPOTrainer, AsymGRPOConfig, tiny_model_dir, tmp_path)
    batch = generation_batch(trainer)
    torch.testing.assert_close(batch["advantages"], ASYM_PATTERN, rtol=1e-5, atol=1e-6)


def test_asym_grpo_with_half_exponents_equals_grpo_with_the_population_std(tiny_model_dir, tmp_path):
    trainer = build(AsymGRPOTrainer, AsymGRPOConfig, tiny_model_dir, tmp_path, beta_pos=0.5, beta_neg=0.5)
    batch = generation_batch(trainer)
    rewards = torch.tensor(patterned_reward([None] * BATCH)).view(-1, GROUP)
    grpo = (rewards - rewards.mean(1, keepdim=True)) / rewards.std(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(batch["advantages"], grpo.view(-1), rtol=1e-5, atol=1e-6)


def test_asym_grpo_trains_and_logs_the_shaping_metrics(tiny_model_dir, tmp_path):
    trainer = build(AsymGRPOTrainer, AsymGRPOConfig, tiny_model_dir, tmp_path)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters())
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    positive = ASYM_PATTERN[ASYM_PATTERN > 0].mean().item()
    negative = ASYM_PATTERN[ASYM_PATTERN < 0].mean().item()
    for entry in logs:
        assert entry["advantage/pos_mean"] == pytest.approx(positive, rel=1e-5)
        assert entry["advantage/neg_mean"] == pytest.approx(negative, rel=1e-5)
        assert entry["advantage/frac_groups_solved_none"] == 0.0
        assert entry["advantage/frac_groups_solved_all"] == 0.0
        assert not any(key.startswith("dipo/") for key in entry)


def test_solved_fractions_count_groups_solved_by_none_and_by_all(tiny_model_dir, tmp_path):
    trainer = build(AsymGRPOTrainer, AsymGRPOConfig, tiny_model_dir, tmp_path, reward_funcs=all_wrong_reward)
    batch = generation_batch(trainer)
    assert torch.equal(batch["advantages"], torch.zeros(BATCH))
    assert trainer._metrics["train"]["advantage/frac_groups_solved_none"] == [1.0]
    assert trainer._metrics["train"]["advantage/frac_groups_solved_all"] == [0.0]
    assert math.isnan(trainer._metrics["train"]["advantage/pos_mean"][0])


def test_a_reward_outside_reward_range_names_the_function_and_value(tiny_model_dir, tmp_path):
    trainer = build(
        AsymGRPOTrainer,
        AsymGRPOConfig,
        tiny_model_dir,
        tmp_path,
        reward_funcs=out_of_range_reward,
        reward_range=[0.0, 1.0],  # an explicit range is a promise: a reward outside it is an error
    )
    with pytest.raises(ValueError, match=r"At step 0.*total reward 2 .*out_of_range_reward=2 \(weight 1\)"):
        trainer.train()


def test_reward_range_maps_non_binary_rewards(tiny_model_dir, tmp_path):
    trainer = build(
        AsymGRPOTrainer,
        AsymGRPOConfig,
        tiny_model_dir,
        tmp_path,
        reward_funcs=[patterned_reward, patterned_reward],
        reward_weights=[2.0, 1.0],
        reward_range=[0.0, 3.0],
    )
    batch = generation_batch(trainer)
    torch.testing.assert_close(batch["advantages"], ASYM_PATTERN, rtol=1e-5, atol=1e-6)


def _prefill(trainer, below_correct: float, above_wrong: float, count: int = 1000) -> None:
    """A synthetic history: `count` correct completions at one perplexity and `count` wrong ones at another."""
    ppl = torch.cat([torch.full((count,), below_correct), torch.full((count,), above_wrong)])
    correct = torch.cat([torch.ones(count, dtype=torch.bool), torch.zeros(count, dtype=torch.bool)])
    trainer.perplexity_queue.push(ppl, correct)


def _reallocated_advantage(flipped: bool, group_size: int = GROUP) -> tuple[float, float]:
    """GRPO's advantage (unbiased std + 1e-4) of a group with one reward different from the others."""
    mean = 1 / group_size
    std = math.sqrt(((1 - mean) ** 2 + (group_size - 1) * mean**2) / (group_size - 1))
    odd, others = (1 - mean) / (std + 1e-4), -mean / (std + 1e-4)
    return (-odd, -others) if flipped else (odd, others)


@pytest.mark.parametrize("case", ["confidently-wrong", "uncertain-correct"])
def test_dipo_reallocates_uniform_groups_by_perplexity(tiny_model_dir, tmp_path, case):
    reward = all_wrong_reward if case == "confidently-wrong" else all_correct_reward
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, reward_funcs=reward, ppl_queue_batches=2)
    if case == "confidently-wrong":  # tau far above the tiny model's perplexities: its wrong groups are "confident"
        _prefill(trainer, below_correct=1e6, above_wrong=1e9)
    else:  # tau far below: its correct groups are "uncertain"
        _prefill(trainer, below_correct=1e-3, above_wrong=1e-2)
    batch = generation_batch(trainer)
    ppl = perplexities(trainer, batch).view(-1, GROUP)
    odd, others = _reallocated_advantage(flipped=case == "uncertain-correct")
    advantages = batch["advantages"].view(-1, GROUP)
    for group in range(BATCH // GROUP):
        highest = int(ppl[group].argmax())
        expected = torch.full((GROUP,), ALPHA * others)
        expected[highest] = ALPHA * odd
        torch.testing.assert_close(advantages[group], expected, rtol=1e-4, atol=1e-6)
    metrics = trainer._metrics["train"]
    assert metrics["dipo/valid_split"] == [1.0]
    direction = "up" if case == "confidently-wrong" else "down"
    assert metrics[f"dipo/frac_groups_{direction}"] == [1.0]
    assert metrics["dipo/queue_size"] == [2000.0 + BATCH]


def test_dipo_leaves_mixed_groups_and_invalid_splits_alone(tiny_model_dir, tmp_path):
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path)
    _prefill(trainer, below_correct=1e6, above_wrong=1e9)  # valid split; the pattern has no uniform group
    batch = generation_batch(trainer)
    rewards = torch.tensor(patterned_reward([None] * BATCH)).view(-1, GROUP)
    grpo = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(batch["advantages"], grpo.view(-1), rtol=1e-5, atol=1e-6)

    # Correct completions above the threshold: the best split misclassifies most, so nothing is reallocated.
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, reward_funcs=all_wrong_reward)
    _prefill(trainer, below_correct=1e9, above_wrong=1e6)
    batch = generation_batch(trainer)
    assert torch.equal(batch["advantages"], torch.zeros(BATCH))
    assert trainer._metrics["train"]["dipo/valid_split"] == [0.0]


def test_dipo_trains_and_logs_its_metrics(tiny_model_dir, tmp_path):
    # Room for the synthetic history and both steps' batches.
    trainer = build(
        DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, reward_funcs=all_wrong_reward, ppl_queue_batches=3
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    _prefill(trainer, below_correct=1e6, above_wrong=1e9)
    trainer.train()
    # All rewards are 0, so every gradient comes from the reallocated rewards.
    assert any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters())
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for entry in logs:
        assert entry["dipo/frac_groups_up"] == 1.0 and entry["dipo/frac_groups_down"] == 0.0
        assert 1e6 < entry["dipo/threshold"] < 1e9
    assert [entry["dipo/queue_size"] for entry in logs] == [2000 + BATCH, 2000 + 2 * BATCH]


def test_policy_split_with_asymmetric_advantages_and_dipo(tiny_model_dir, tmp_path):
    """The base advantage of Policy Split is the asymmetric rule over the 2n completions, plus DiPO's term."""

    def second_group_wrong(completions, **kwargs):
        return [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0][: len(completions)]

    trainer = build(
        PolicySplitTrainer,
        PolicySplitConfig,
        tiny_model_dir,
        tmp_path,
        reward_funcs=second_group_wrong,
        asymmetric_advantages=True,
        perplexity_reallocation=True,
    )
    _prefill(trainer, below_correct=1e6, above_wrong=1e9)
    batch = generation_batch(trainer)
    base = batch[BASE_ADVANTAGE_KEY][:BATCH].view(-1, GROUP)  # generated rows; cross pairs repeat them
    # Group 1, p = 1/4: the asymmetric rule.
    torch.testing.assert_close(base[0], ASYM_PATTERN[:GROUP], rtol=1e-5, atol=1e-6)
    # Group 2 all wrong and confident: 0.1 x the asymmetric rule on the reallocated one-hot rewards, whose 1 goes
    # to the completion with the highest perplexity under its own context (the high-entropy ones have the
    # instruction in their prompt).
    generated = {key: batch[key][:BATCH] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
    highest = int(perplexities(trainer, generated).view(-1, GROUP)[1].argmax())
    expected = torch.full((GROUP,), -ALPHA * (1 / 3) ** 0.4)
    expected[highest] = ALPHA * 3**0.9
    torch.testing.assert_close(base[1], expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(batch[BASE_ADVANTAGE_KEY][BATCH:], batch[BASE_ADVANTAGE_KEY][:BATCH])
    assert trainer._metrics["train"]["dipo/frac_groups_up"] == [0.5]

    trainer.train()
    for entry in [entry for entry in trainer.state.log_history if "loss" in entry]:
        assert {"dipo/threshold", "advantage/pos_mean", "policy_split/high_entropy/reward"} <= set(entry)


def test_resume_restores_the_perplexity_queue(tiny_model_dir, tmp_path):
    overrides = {"save_strategy": "steps", "save_steps": 1, "reward_funcs": all_wrong_reward}
    first = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, **overrides)
    first.train()
    checkpoint = os.path.join(first.args.output_dir, "checkpoint-1")
    saved = torch.load(os.path.join(checkpoint, PERPLEXITY_QUEUE_FILE), weights_only=True)
    assert len(saved["ppl"]) == 1 and saved["ppl"][0].numel() == BATCH
    # The first trainer's queue at the end holds step 1's batch, then step 2's.
    assert torch.equal(first.perplexity_queue.batches[0][0], saved["ppl"][0])

    resumed = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path / "resumed", **overrides)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert len(resumed.perplexity_queue.batches) == 2
    assert torch.equal(resumed.perplexity_queue.batches[0][0], saved["ppl"][0])
    assert torch.equal(resumed.perplexity_queue.batches[0][1], saved["correct"][0])


def test_trainers_reject_another_trainers_config(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="AsymGRPOTrainer needs `args` to be a AsymGRPOConfig"):
        AsymGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=patterned_reward,
            args=DiPOConfig(**settings(tmp_path)),
            train_dataset=conversational_dataset(),
        )


def test_defaults_of_the_drop_in_configs(tmp_path):
    asym = AsymGRPOConfig(**settings(tmp_path))
    assert (asym.asymmetric_advantages, asym.beta_pos, asym.beta_neg, asym.perplexity_reallocation) == (
        True,
        0.9,
        0.4,
        False,
    )
    dipo = DiPOConfig(**settings(tmp_path))
    assert (dipo.asymmetric_advantages, dipo.perplexity_reallocation, dipo.ppl_alpha, dipo.ppl_queue_batches) == (
        False,
        True,
        0.1,
        2,
    )
    split = PolicySplitConfig(**settings(tmp_path))
    assert (split.asymmetric_advantages, split.perplexity_reallocation) == (False, False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"beta_pos": -0.1}, "beta_pos must be >= 0"),
        ({"beta_neg": -1.0}, "beta_neg must be >= 0"),
        ({"reward_range": [1.0, 0.0]}, "reward_range must be \\[low, high\\] with low < high"),
        ({"reward_range": [0.5, 0.5]}, "reward_range must be \\[low, high\\] with low < high"),
        ({"reward_range": []}, "reward_range must be \\[low, high\\] with low < high"),
        ({"reward_range": [0.0, 1.0, 2.0]}, "reward_range must be \\[low, high\\] with low < high"),
        ({"ppl_alpha": -0.1}, "ppl_alpha must be >= 0"),
        ({"ppl_queue_batches": 0}, "ppl_queue_batches must be an integer >= 1"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation='sum_then_normalize'"),
    ],
)
@pytest.mark.parametrize("config_class", [AsymGRPOConfig, DiPOConfig, PolicySplitConfig])
def test_bad_shaping_knobs_are_value_errors(tmp_path, config_class, overrides, message):
    if "multi_objective_aggregation" in overrides and config_class is not AsymGRPOConfig:
        overrides = {**overrides, "asymmetric_advantages": True}
    with pytest.raises(ValueError, match=message):
        config_class(**settings(tmp_path, **overrides))


def test_dipo_with_one_question_per_device_batch(tiny_model_dir, tmp_path):
    """One group per batch: the reallocation masks must be fresh tensors, not views of one group's row."""
    trainer = build(
        DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, reward_funcs=all_wrong_reward, per_device_train_batch_size=4
    )
    _prefill(trainer, below_correct=1e6, above_wrong=1e9)
    batch = generation_batch(trainer)
    assert int((batch["advantages"] > 0).sum()) == 1 and int((batch["advantages"] < 0).sum()) == GROUP - 1


def length_penalty_reward(completions, **kwargs) -> list[float]:
    """TRL's documentation example: a continuous reward that never crosses the 0.5 correctness threshold."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [-abs(20 - len(text)) for text in texts]


def test_dipo_warns_once_per_reason_when_it_cannot_act(tiny_model_dir, tmp_path, caplog):
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, reward_funcs=length_penalty_reward, max_steps=3)
    trainer.dipo_warn_after_batches = 2
    with caplog.at_level("WARNING", logger="trl_policysplit.shaping_trainer"):
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["dipo/valid_split"] for entry in logs] == [0.0, 0.0, 0.0]  # nothing above the threshold
    warnings = [record.getMessage() for record in caplog.records if record.getMessage().startswith("DiPO:")]
    assert len(warnings) == 2, warnings  # three batches, each reason once
    assert warnings[0].startswith("DiPO: rewards are not binary: length_penalty_reward (")
    assert warnings[1].startswith("DiPO: no valid perplexity threshold for 2 generation batches in a row")
    assert "no completion's total reward is above correct_reward_threshold=0.5" in warnings[1]


def test_dipo_with_binary_rewards_and_a_valid_split_does_not_warn(tiny_model_dir, tmp_path, caplog):
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path, reward_funcs=all_wrong_reward)
    trainer.dipo_warn_after_batches = 1
    _prefill(trainer, below_correct=1e6, above_wrong=1e9)
    with caplog.at_level("WARNING", logger="trl_policysplit.shaping_trainer"):
        generation_batch(trainer)
    assert trainer._metrics["train"]["dipo/valid_split"] == [1.0]
    assert not [record for record in caplog.records if record.getMessage().startswith("DiPO:")]
