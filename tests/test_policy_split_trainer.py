"""PolicySplitTrainer end to end on the tiny offline model: batch layout, advantages, metrics, composition."""

from __future__ import annotations

import math
import os

import pytest
import torch
from tiny import (
    conversational_dataset,
    digit_reward,
    generate_with_rewards,
    length_reward,
    text_dataset,
    trainer_logps,
    trainer_settings,
)

from trl_policysplit import PolicySplitConfig, PolicySplitTrainer
from trl_policysplit.functional import clamp_by_advantage, policy_split_internal_reward, policy_split_mode_metrics
from trl_policysplit.modes import to_high_entropy
from trl_policysplit.policy_split_trainer import BASE_ADVANTAGE_KEY, CONTEXT_KEY, IS_CROSS_KEY

NUM_GENERATIONS = 4
BATCH = 8  # two questions per step
MODE_METRICS = ["reward", "completion_length", "entropy", "surprisal", "distinct_correct", "clamp_frac"]
KL_METRICS = ("kl_normal_to_high_entropy", "kl_high_entropy_to_normal")  # the paper's per-sequence averaging


def make_config(tmp_path, **overrides) -> PolicySplitConfig:
    values = {"per_device_train_batch_size": BATCH, "num_generations": NUM_GENERATIONS, "eta_high": 0.5}
    values.update(overrides)
    return PolicySplitConfig(**trainer_settings(tmp_path, **values))


def make_trainer(model_dir, tmp_path, reward_funcs=digit_reward, dataset=None, **overrides) -> PolicySplitTrainer:
    trainer_kwargs = {key: overrides.pop(key) for key in ("peft_config", "eval_dataset") if key in overrides}
    return PolicySplitTrainer(
        model=model_dir,
        reward_funcs=reward_funcs,
        args=make_config(tmp_path, **overrides),
        train_dataset=dataset if dataset is not None else conversational_dataset(),
        **trainer_kwargs,
    )


def first_batch(trainer: PolicySplitTrainer) -> dict:
    """The first generation batch, produced exactly as training produces it (before shuffling)."""
    rows, batch, _ = first_batch_with_rewards(trainer)
    return rows, batch


def first_batch_with_rewards(trainer: PolicySplitTrainer) -> tuple[list, dict, torch.Tensor]:
    """`first_batch` and the rewards TRL gathered for it, ``(completions, reward functions)``."""
    trainer.model.train()
    rows = next(iter(trainer.get_train_dataloader()))
    return (rows, *generate_with_rewards(trainer, rows))


def strip_left(ids: torch.Tensor, mask: torch.Tensor) -> list[int]:
    return ids[mask.bool()].tolist()


def template_ids(trainer: PolicySplitTrainer, prompt) -> list[int]:
    return trainer.processing_class.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]


def surprisals(trainer: PolicySplitTrainer, batch: dict) -> torch.Tensor:
    """-log p of every completion token, from a separate plain forward of the model.

    TRL scores through its fused, chunked LM head; the two agree to about 1e-3 in float32, hence the tolerances.
    """
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logits = trainer.model(input_ids=input_ids, attention_mask=attention_mask).logits
    width = batch["completion_ids"].size(1)
    logps = torch.log_softmax(logits[:, -width - 1 : -1].float() / trainer.temperature, dim=-1)
    return -logps.gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)


def test_every_question_trains_4n_sequences_with_the_right_context_and_completion(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path)
    rows, batch = first_batch(trainer)
    n = NUM_GENERATIONS // 2
    assert batch["completion_ids"].size(0) == 2 * BATCH  # generated rows, then their cross pairs
    context, is_cross = batch[CONTEXT_KEY], batch[IS_CROSS_KEY]
    for question in range(BATCH // NUM_GENERATIONS):
        generated = torch.arange(question * NUM_GENERATIONS, (question + 1) * NUM_GENERATIONS)
        rows_of_question = torch.cat([generated, generated + BATCH])
        sets = {
            "Q1": (~is_cross[rows_of_question] & (context[rows_of_question] == 0)).sum().item(),
            "Q2": (~is_cross[rows_of_question] & (context[rows_of_question] == 1)).sum().item(),
            "Q3": (is_cross[rows_of_question] & (context[rows_of_question] == 0)).sum().item(),
            "Q4": (is_cross[rows_of_question] & (context[rows_of_question] == 1)).sum().item(),
        }
        assert sets == {"Q1": n, "Q2": n, "Q3": n, "Q4": n}
        # The first n completions of a question come from the normal prompt, the last n from the HE prompt.
        assert context[generated].tolist() == [0] * n + [1] * n

    instruction = trainer.args.high_entropy_prompt
    for i in range(BATCH):
        normal_prompt = rows[i]["prompt"]
        high_prompt = to_high_entropy(normal_prompt, instruction)
        own_expected = high_prompt if context[i] == 1 else normal_prompt
        cross_expected = normal_prompt if context[i] == 1 else high_prompt
        assert strip_left(batch["prompt_ids"][i], batch["prompt_mask"][i]) == template_ids(trainer, own_expected)
        assert strip_left(batch["prompt_ids"][BATCH + i], batch["prompt_mask"][BATCH + i]) == template_ids(
            trainer, cross_expected
        )
        assert context[BATCH + i] == 1 - context[i]


def test_cross_pairs_carry_exactly_the_generated_completion_ids(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path)
    _, batch = first_batch(trainer)
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    assert torch.equal(ids[BATCH:], ids[:BATCH]) and torch.equal(mask[BATCH:], mask[:BATCH])
    decoded = trainer.processing_class.batch_decode(ids[:BATCH] * mask[:BATCH], skip_special_tokens=True)
    assert len(set(decoded)) > 1  # sampled completions differ, so the pairing above is not trivially true
    assert batch["num_items_in_batch"].item() == 2 * mask[:BATCH].sum().item()


def test_advantages_are_grpo_plus_the_clamped_internal_reward_of_each_context(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir, tmp_path, reward_funcs=length_reward, eta_high=0.5, eta_normal=0.0, kappa=2.0, alpha=0.5
    )
    _, batch, rewards_per_func = first_batch_with_rewards(trainer)
    base = batch[BASE_ADVANTAGE_KEY]
    mask = batch["completion_mask"].bool()

    # Base advantage: GRPO's group normalization of the rewards over the question's 2n completions.
    rewards = rewards_per_func[:, 0].view(-1, NUM_GENERATIONS)
    expected_base = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(base[:BATCH], expected_base.flatten())
    torch.testing.assert_close(base[BATCH:], base[:BATCH])

    advantages = batch["advantages"]
    assert advantages.shape == batch["completion_ids"].shape
    context = batch[CONTEXT_KEY].bool()
    # eta_normal = 0: normal-context rows (Q1, Q3) keep exactly the GRPO advantage.
    normal_rows = ~context
    full_base = base.unsqueeze(1).expand_as(advantages)
    assert torch.equal(advantages[normal_rows][mask[normal_rows]], full_base[normal_rows][mask[normal_rows]])

    # HE-context rows (Q2, Q4) differ by eta_high * b~, b recomputed here from the surprisals, clamped by |A| / kappa.
    surprisal = -trainer_logps(trainer, batch)  # the trainer's own numbers, see tiny.trainer_logps
    torch.testing.assert_close(surprisal * mask, surprisals(trainer, batch) * mask, atol=3e-3, rtol=1e-3)
    high_rows = torch.cat([torch.arange(BATCH)[context[:BATCH]], torch.arange(BATCH, 2 * BATCH)[context[BATCH:]]])
    # Order HE-context rows question by question: Q2 then Q4 rows of each question form its HE group.
    per_question = []
    for question in range(BATCH // NUM_GENERATIONS):
        members = [r for r in high_rows.tolist() if (r % BATCH) // NUM_GENERATIONS == question]
        per_question.extend(members)
    order = torch.tensor(per_question)
    other_rows = (order + BATCH) % (2 * BATCH)  # the same completion under the normal context
    b = policy_split_internal_reward(surprisal[order], surprisal[other_rows], mask[order], NUM_GENERATIONS, 0.5)
    expected = clamp_by_advantage(0.5 * b, base[order], kappa=2.0)
    got = (advantages[order] - base[order].unsqueeze(1)) * mask[order]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert got.abs().sum() > 0  # the bonus is really there
    assert torch.all(got.abs() <= base[order].abs().unsqueeze(1) / 2.0 + 1e-6)


def test_training_changes_parameters_and_logs_per_mode_metrics(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
    assert len(changed) == len(before)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        for mode in ("normal", "high_entropy"):
            for metric in MODE_METRICS:
                assert math.isfinite(entry[f"policy_split/{mode}/{metric}"]), (mode, metric)
            assert entry[f"policy_split/{mode}/completions"] == BATCH // 2
            assert entry[f"policy_split/{mode}/train_sequences"] == BATCH
        for name in (*KL_METRICS, *(f"{kl}_token" for kl in KL_METRICS), "clamp_frac"):
            assert math.isfinite(entry[f"policy_split/{name}"]), name
        assert 0.0 <= entry["policy_split/clamp_frac"] <= 1.0


def test_inter_mode_kl_is_logged_per_sequence_as_in_the_paper_and_token_weighted():
    # One group of 4 completions: 2 normal of 1 and 3 tokens, 2 high-entropy of 2 and 1 tokens. The own log-probs
    # are 0, so cross - own surprisal is the negated cross log-prob; 99 sits on padding and must not count.
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0]])
    cross_minus_own = torch.tensor([[3.0, 99.0, 99.0], [1.0, 1.0, 1.0], [2.0, 4.0, 99.0], [0.5, 99.0, 99.0]])
    logged = policy_split_mode_metrics(
        rewards=torch.tensor([1.0, 0.0, 1.0, 0.0]),
        completion_ids=torch.tensor([[5, 6, 7], [5, 6, 7], [8, 9, 10], [8, 9, 11]]),
        mask=mask,
        is_high_entropy=torch.tensor([False, False, True, True]),
        own_logps=torch.zeros(4, 3),
        cross_logps=-cross_minus_own,
        group_size=4,
        correct_threshold=0.5,
    )
    expected = {
        # Paper: each completion's mean over its tokens, then the mean over the mode's completions.
        "kl_normal_to_high_entropy": (3.0 + 1.0) / 2,
        "kl_high_entropy_to_normal": (3.0 + 0.5) / 2,
        # Token-weighted: the mode's token sum over its token count.
        "kl_normal_to_high_entropy_token": (3.0 + 3.0) / 4,
        "kl_high_entropy_to_normal_token": (6.0 + 0.5) / 3,
    }
    for name, value in expected.items():
        assert logged[f"policy_split/{name}"] == pytest.approx(value), name


def test_reward_functions_get_the_normal_prompt_and_a_mode_column(tiny_model_dir, tmp_path):
    seen = []

    def recording_reward(prompts, completions, mode, **kwargs):
        seen.append((prompts, mode))
        return [1.0] * len(completions)

    trainer = make_trainer(tiny_model_dir, tmp_path, reward_funcs=recording_reward)
    rows, _ = first_batch(trainer)
    prompts, modes = seen[0]
    assert modes == ["normal", "normal", "high_entropy", "high_entropy"] * 2
    assert prompts == [row["prompt"] for row in rows]


def test_without_sharing_each_mode_is_its_own_group(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, reward_funcs=length_reward, share_rollouts=False)
    _, batch, rewards_per_func = first_batch_with_rewards(trainer)
    assert batch["completion_ids"].size(0) == BATCH and not batch[IS_CROSS_KEY].any()
    rewards = rewards_per_func[:, 0].view(-1, NUM_GENERATIONS // 2)
    expected = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(batch[BASE_ADVANTAGE_KEY], expected.flatten())
    trainer.train()
    assert trainer.state.log_history[0]["policy_split/normal/train_sequences"] == BATCH // 2


def test_nan_rewards_do_not_poison_other_groups(tiny_model_dir, tmp_path):
    def partial_reward(prompts, completions, **kwargs):
        # The batch's first question is never scored; the other one is.
        pairs = zip(prompts, completions, strict=True)
        return [None if p == prompts[0] else float(len(c[0]["content"]) % 3) for p, c in pairs]

    trainer = make_trainer(tiny_model_dir, tmp_path, reward_funcs=partial_reward, kappa=0.0)
    rows, batch = first_batch(trainer)
    unscored = torch.tensor([row["prompt"] == rows[0]["prompt"] for row in rows] * 2)
    assert unscored.any() and not unscored.all()
    advantages = batch["advantages"] * batch["completion_mask"]
    assert torch.isfinite(advantages).all()
    assert torch.equal(advantages[unscored], torch.zeros_like(advantages[unscored]))
    assert advantages[~unscored].abs().sum() > 0


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo"])
def test_every_loss_type_trains(tiny_model_dir, tmp_path, loss_type):
    overrides = {"loss_type": loss_type}
    if loss_type == "cispo":
        overrides["epsilon_high"] = 5.0
    trainer = make_trainer(tiny_model_dir, tmp_path, max_steps=1, **overrides)
    trainer.train()
    entry = trainer.state.log_history[0]
    assert math.isfinite(entry["loss"]) and entry["grad_norm"] > 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 4, "steps_per_generation": 4},
        {"num_iterations": 2},
        {"beta": 0.1},
        {"epsilon_high": 0.28, "entropy_coef": 0.01, "top_entropy_quantile": 0.5},
        {"entropy_estimator": "entropy", "bonus_normalization": "range", "bonus_low_quantile": 0.2},
        {"bonus_uniform_reward_groups_only": True, "kappa": 0.0},
        {"eta_normal": 0.1, "alpha": 0.0},
    ],
    ids=["accumulation", "iterations", "beta", "trl-entropy-knobs", "entropy-estimator", "uniform-only", "penalty"],
)
@pytest.mark.parametrize("eta_high", [0.5, 0.0], ids=["bonus", "defaults"])  # 0.0: the cross pairs go unscored
def test_composes_with_trl_options(tiny_model_dir, tmp_path, overrides, eta_high):
    trainer = make_trainer(tiny_model_dir, tmp_path, **{"eta_high": eta_high, **overrides})
    trainer.train()
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(entry["loss"]) for entry in losses)
    assert all(math.isfinite(entry["policy_split/high_entropy/entropy"]) for entry in losses)
    kl = [
        entry["policy_split/kl_high_entropy_to_normal_token"]
        for entry in losses
        if "policy_split/kl_high_entropy_to_normal_token" in entry
    ]
    assert kl and all(math.isfinite(value) for value in kl)  # from generation, or from the loss when not scored
    if "beta" in overrides:
        assert all(entry["kl"] >= 0 for entry in losses)


def test_old_logps_from_trl_are_reused_and_extended_to_cross_pairs(tiny_model_dir, tmp_path):
    # With steps_per_generation > gradient_accumulation_steps TRL computes old log-probs of the generated rows.
    trainer = make_trainer(tiny_model_dir, tmp_path, per_device_train_batch_size=4, steps_per_generation=2)
    _, batch = first_batch(trainer)
    assert batch["old_per_token_logps"].shape == batch["completion_ids"].shape
    mask = batch["completion_mask"].bool()
    expected = -surprisals(trainer, batch)
    torch.testing.assert_close(batch["old_per_token_logps"][mask], expected[mask], atol=3e-3, rtol=1e-3)


@pytest.mark.parametrize("eta_high", [0.5, 0.0], ids=["bonus", "defaults"])
def test_beta_adds_reference_logps_for_cross_pairs(tiny_model_dir, tmp_path, eta_high):
    trainer = make_trainer(tiny_model_dir, tmp_path, beta=0.1, eta_high=eta_high)
    _, batch = first_batch(trainer)
    assert batch["ref_per_token_logps"].shape == batch["completion_ids"].shape
    # Before any update the reference equals the policy, under each row's own context.
    mask = batch["completion_mask"].bool()
    torch.testing.assert_close(
        batch["ref_per_token_logps"][mask], -surprisals(trainer, batch)[mask], atol=3e-3, rtol=1e-3
    )


def test_plain_text_prompts_and_weighted_rewards(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path,
        reward_funcs=[digit_reward, length_reward],
        dataset=text_dataset(),
        reward_weights=[1.0, 0.5],
    )
    rows, batch, rewards_per_func = first_batch_with_rewards(trainer)
    instruction = trainer.args.high_entropy_prompt
    high_prompt_ids = trainer.processing_class(text=to_high_entropy(rows[2]["prompt"], instruction))["input_ids"]
    assert strip_left(batch["prompt_ids"][2], batch["prompt_mask"][2]) == high_prompt_ids
    # Each mode's logged reward is the mean of the weighted total over its completions.
    weighted = rewards_per_func @ torch.tensor([1.0, 0.5])
    high = batch[CONTEXT_KEY][:BATCH].bool()
    assert rewards_per_func[:, 0].unique().numel() > 1 or rewards_per_func[:, 1].unique().numel() > 1
    logged = trainer._metrics["train"]["policy_split/high_entropy/reward"]
    assert logged == [pytest.approx(weighted[high].mean().item())]
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["policy_split/high_entropy/reward"])


def test_lora_trains_only_the_adapter_and_uses_it_off_as_reference(tiny_model_dir, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = make_trainer(tiny_model_dir, tmp_path, peft_config=lora, beta=0.1)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all("lora_" in name for name in changed)
    assert all(math.isfinite(entry["kl"]) for entry in trainer.state.log_history if "loss" in entry)


def test_resume_from_checkpoint_continues_training(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    assert os.path.isdir(checkpoint)
    resumed = make_trainer(tiny_model_dir, tmp_path, save_strategy="steps", save_steps=2, max_steps=3)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 3
    last = [entry for entry in resumed.state.log_history if "loss" in entry][-1]
    assert last["step"] == 3 and math.isfinite(last["policy_split/normal/reward"])


@pytest.mark.parametrize(
    ("completions_per_mode", "per_mode"), [("half", 4), ("num_generations", 8)]
)  # 8 eval rows: half per mode, or num_generations_eval (4) per mode for each of 2 questions
def test_evaluation_logs_per_mode_metrics(tiny_model_dir, tmp_path, completions_per_mode, per_mode):
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path,
        completions_per_mode=completions_per_mode,
        eval_dataset=conversational_dataset(8),
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=8,
        num_generations_eval=4,
        max_steps=1,
    )
    trainer.train()
    evaluation = [entry for entry in trainer.state.log_history if "eval_loss" in entry][0]
    assert evaluation["eval_policy_split/normal/completions"] == per_mode
    assert math.isfinite(evaluation["eval_policy_split/high_entropy/reward"])


def test_the_heap_is_trimmed_before_every_training_backward_on_cpu(tiny_model_dir, tmp_path, monkeypatch):
    from trl_policysplit import memory, policy_split_trainer

    assert memory.release_free_heap() is (memory._MALLOC_TRIM is not None)
    calls = []
    monkeypatch.setattr(policy_split_trainer, "release_free_heap", lambda: calls.append(torch.is_grad_enabled()))
    trainer = make_trainer(tiny_model_dir, tmp_path, max_steps=2)
    trainer.train()
    # 2 optimizer steps of gradient_accumulation_steps loss micro-batches each (doubled to keep GRPO's micro-batch).
    assert calls == [True] * 2 * trainer.args.gradient_accumulation_steps
    calls.clear()
    batch = first_batch(trainer)[1]
    trainer.model.eval()
    trainer._compute_loss(trainer.model, batch)  # evaluation
    trainer.model.train()
    with torch.no_grad():
        trainer._compute_loss(trainer.model, batch)  # no backward follows
    assert calls == []
