"""The cost floor (issue 13): the sampler's log-probs replace no-grad forwards, and Policy Split keeps GRPO's loss
micro-batch by default with the same gradient."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import conversational_dataset, digit_reward, forward_logps, trainer_settings
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from trl_policysplit import DiPOConfig, DiPOTrainer, PolicySplitConfig, PolicySplitTrainer
from trl_policysplit.policy_split_trainer import BASE_ADVANTAGE_KEY, SAMPLED_LOGPS_KEY
from trl_policysplit.sampling import SampledTokenLogps

BATCH = 8
SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 6}  # processors that must not leak into the log-probs
KL_METRICS = [
    f"policy_split/kl_{name}{suffix}"
    for name in ("normal_to_high_entropy", "high_entropy_to_normal")
    for suffix in ("", "_token")
]


def build(trainer_class, config_class, model_dir, tmp_path, **overrides):
    values = trainer_settings(tmp_path, per_device_train_batch_size=BATCH, num_generations=4, **SAMPLING)
    values.update(overrides)
    return trainer_class(
        model=model_dir, reward_funcs=digit_reward, args=config_class(**values), train_dataset=conversational_dataset()
    )


def generate_with_scoring_log(trainer) -> tuple[dict, list[int]]:
    """The first generation batch, and the rows of every no-grad forward that produced it."""
    scored_rows: list[int] = []
    forward = trainer._get_per_token_logps_and_entropies

    def logged(model, input_ids, *args, **kwargs):
        if not torch.is_grad_enabled():
            scored_rows.append(input_ids.size(0))
        return forward(model, input_ids, *args, **kwargs)

    trainer._get_per_token_logps_and_entropies = logged
    trainer.model.train()
    batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    return batch, scored_rows


def reference_logps(trainer, batch: dict, rows: int) -> torch.Tensor:
    """A full forward of the generated rows through TRL's own scoring path."""
    own = {key: batch[key][:rows] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
    return forward_logps(trainer, own)


def record_perplexities(trainer) -> list[torch.Tensor]:
    """The perplexities DiPO's queue receives (those of the scored completions: here all), batch by batch."""
    perplexities: list[torch.Tensor] = []
    push = trainer.perplexity_queue.push

    def listening(ppl, correct):
        perplexities.append(ppl)
        push(ppl, correct)

    trainer.perplexity_queue.push = listening
    return perplexities


def assert_perplexities_of_a_forward(trainer, batch: dict, perplexities: torch.Tensor) -> None:
    expected = reference_logps(trainer, batch, BATCH)
    mask = batch["completion_mask"].float()
    expected_log_ppl = -(expected * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(perplexities.log(), expected_log_ppl, atol=3e-3, rtol=1e-3)


def test_recorded_log_probs_equal_a_forward_with_temperature_and_truncating_processors(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = tokenizer(["one two three", "four"], return_tensors="pt", padding=True, padding_side="left")
    torch.manual_seed(0)
    with SampledTokenLogps(model, temperature=0.7) as recorder:
        out = model.generate(
            **prompts, do_sample=True, max_new_tokens=6, temperature=0.7, top_p=0.8, top_k=6, pad_token_id=0
        )
    completions = out[:, prompts["input_ids"].size(1) :]
    recorded = recorder.per_row(completions.tolist())
    assert [len(row) for row in recorded] == [completions.size(1)] * 2
    attention = torch.cat([prompts["attention_mask"], torch.ones_like(completions)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=out, attention_mask=attention).logits[:, -completions.size(1) - 1 : -1]
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(torch.tensor(recorded), expected, atol=1e-5, rtol=1e-5)
    # top-p/top-k renormalized probabilities would be larger than the model's: the recorded ones are not those.
    assert (torch.tensor(recorded) < 0).all()


def test_recorder_gives_up_when_it_cannot_follow_the_steps(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[5, 6, 7]])
    with SampledTokenLogps(model, temperature=1.0) as recorder, torch.no_grad():
        model(input_ids=ids)
        model(input_ids=torch.tensor([[8, 9]]))  # two tokens in one step, as assisted decoding does
    assert recorder.per_row([[8, 9, 10]]) is None
    with SampledTokenLogps(model, temperature=1.0) as recorder, torch.no_grad():
        model(input_ids=ids)
    assert recorder.per_row([[8, 9]]) is None  # more tokens than steps: not this generation's record


def test_policy_split_scores_only_the_cross_pairs(tiny_model_dir, tmp_path):
    trainer = build(PolicySplitTrainer, PolicySplitConfig, tiny_model_dir, tmp_path, eta_high=0.5)
    batch, scored_rows = generate_with_scoring_log(trainer)
    assert sum(scored_rows) == BATCH  # the cross pairs; the generated rows' log-probs came from the sampler
    sampled = batch["sampling_per_token_logps"][:BATCH]
    mask = batch["completion_mask"][:BATCH].bool()
    expected = reference_logps(trainer, batch, BATCH)
    torch.testing.assert_close(sampled[mask], expected[mask], atol=3e-3, rtol=1e-3)


def test_policy_split_at_defaults_runs_no_scoring_forward(tiny_model_dir, tmp_path):
    # eta_high = eta_normal = 0 and no drift guard: nothing before the loss reads the cross pairs' log-probs.
    trainer = build(PolicySplitTrainer, PolicySplitConfig, tiny_model_dir, tmp_path)
    batch, scored_rows = generate_with_scoring_log(trainer)
    assert scored_rows == []
    assert "sampling_per_token_logps" not in batch  # TRL's slot would claim them for the cross rows
    sampled = batch[SAMPLED_LOGPS_KEY]
    torch.testing.assert_close(sampled[BATCH:], sampled[:BATCH], rtol=0, atol=0)  # each row's completion as sampled
    mask = batch["completion_mask"][:BATCH].bool()
    torch.testing.assert_close(
        sampled[:BATCH][mask], reference_logps(trainer, batch, BATCH)[mask], atol=3e-3, rtol=1e-3
    )
    base = batch[BASE_ADVANTAGE_KEY].unsqueeze(1).expand_as(batch["advantages"])
    torch.testing.assert_close(batch["advantages"], base, rtol=0, atol=0)
    # Evaluation still scores the cross pairs: its KL comes from generation, as with any setting.
    trainer.eval_dataset = conversational_dataset(8)
    metrics = trainer.evaluate()
    assert all(math.isfinite(metrics[f"eval_{name}"]) for name in KL_METRICS)


def test_skipping_the_scoring_forward_changes_no_gradient_and_not_the_logged_kl(tiny_model_dir, tmp_path, monkeypatch):
    # The default two micro-batches per generation batch: each loss call logs its part of the batch's KL.
    settings = {"eta_high": 0.0}
    skipped, _, trainer = first_step_gradients(tiny_model_dir, tmp_path / "skipped", **settings)
    skipped_logs = trainer.state.log_history[0]
    monkeypatch.setattr(PolicySplitTrainer, "_cross_logps_needed", lambda self, output, mode: True)
    scored, _, trainer = first_step_gradients(tiny_model_dir, tmp_path / "scored", **settings)
    scored_logs = trainer.state.log_history[0]
    assert skipped.keys() == scored.keys() and skipped
    for name in skipped:
        torch.testing.assert_close(skipped[name], scored[name], rtol=0, atol=0)
    assert all(math.isfinite(scored_logs[name]) for name in KL_METRICS)
    assert max(abs(scored_logs[name]) for name in KL_METRICS) > 1e-5  # the modes do differ
    for name in KL_METRICS:  # float32 log-probs of two forwards: about 1e-7 apart per token
        assert skipped_logs[name] == pytest.approx(scored_logs[name], rel=1e-3, abs=1e-6), name


def test_policy_split_without_sampler_logprobs_scores_every_row(tiny_model_dir, tmp_path):
    trainer = build(PolicySplitTrainer, PolicySplitConfig, tiny_model_dir, tmp_path, sampler_logprobs=False)
    batch, scored_rows = generate_with_scoring_log(trainer)
    assert sum(scored_rows) == 2 * BATCH
    assert "sampling_per_token_logps" not in batch


def test_dipo_runs_no_forward_of_its_own(tiny_model_dir, tmp_path):
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path)
    perplexity_inputs = record_perplexities(trainer)
    batch, scored_rows = generate_with_scoring_log(trainer)
    assert scored_rows == []
    assert_perplexities_of_a_forward(trainer, batch, perplexity_inputs[0])


def test_an_unrecorded_generation_falls_back_to_a_forward(tiny_model_dir, tmp_path, monkeypatch):
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path)
    monkeypatch.setattr(SampledTokenLogps, "per_row", lambda self, completion_ids: None)
    prompt_ids = [[5, 6, 7], [8, 9]]
    trainer.model.train()
    completion_ids, logprobs = trainer._generate_single_turn(prompt_ids, None, {}, 1)
    # Lists a tool loop can extend with a later turn's, as long as each completion, and all NaN.
    assert [len(row) for row in logprobs] == [len(row) for row in completion_ids]
    assert all(math.isnan(value) for row in logprobs for value in row)
    perplexity_inputs = record_perplexities(trainer)
    batch, scored_rows = generate_with_scoring_log(trainer)
    assert "sampling_per_token_logps" not in batch
    assert scored_rows == [BATCH]  # the perplexity's forward, as without recording
    assert_perplexities_of_a_forward(trainer, batch, perplexity_inputs[0])


def test_vllm_log_probs_count_only_without_truncating_processors(tiny_model_dir, tmp_path):
    trainer = build(DiPOTrainer, DiPOConfig, tiny_model_dir, tmp_path)
    trainer.use_vllm = True  # the rule only reads the sampling settings
    assert not trainer._sampler_logps_are_model_logps()  # top_p 0.8, top_k 6: vLLM reports processed log-probs
    trainer.top_p, trainer.top_k = 1.0, 0
    assert trainer._sampler_logps_are_model_logps()
    trainer.repetition_penalty = 1.1
    assert not trainer._sampler_logps_are_model_logps()


class GradientCapture(TrainerCallback):
    """Gradients right before the first optimizer step, and the rows of every loss micro-batch."""

    def __init__(self) -> None:
        self.model = None
        self.gradients: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self.gradients:
            self.gradients = {
                name: p.grad.detach().clone() for name, p in self.model.named_parameters() if p.grad is not None
            }


def first_step_gradients(model_dir, tmp_path, **overrides) -> tuple[dict[str, torch.Tensor], list[int], object]:
    # float32 throughout: under TRL's default bf16 autocast two batch splits differ by bf16 rounding (~2e-3).
    values = trainer_settings(
        tmp_path, per_device_train_batch_size=BATCH, num_generations=4, max_steps=1, max_grad_norm=0.0, eta_high=0.5
    )
    values["bf16"] = False
    values.update(overrides)
    capture = GradientCapture()
    trainer = PolicySplitTrainer(
        model=model_dir,
        reward_funcs=digit_reward,
        args=PolicySplitConfig(**values),
        train_dataset=conversational_dataset(),
        callbacks=[capture],
    )
    capture.model = trainer.model
    rows: list[int] = []
    compute_loss = trainer._compute_loss

    def logged(model, inputs):
        rows.append(inputs["completion_ids"].size(0))
        return compute_loss(model, inputs)

    trainer._compute_loss = logged
    trainer.train()
    return capture.gradients, rows, trainer


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_default_keeps_grpo_micro_batch_with_the_same_gradient(tiny_model_dir, tmp_path, loss_type):
    kept, kept_rows, trainer = first_step_gradients(tiny_model_dir, tmp_path / "kept", loss_type=loss_type)
    doubled, doubled_rows, _ = first_step_gradients(
        tiny_model_dir, tmp_path / "doubled", loss_type=loss_type, keep_grpo_micro_batch=False
    )
    assert kept_rows == [BATCH, BATCH]  # GRPO's micro-batch, twice per optimizer step
    assert doubled_rows == [2 * BATCH]
    assert trainer.args.gradient_accumulation_steps == 2 and trainer.args.generation_batch_size == BATCH
    assert kept.keys() == doubled.keys() and kept
    for name in kept:  # same gradient up to float order: relative to each tensor's size, not element by element
        error = (kept[name] - doubled[name]).norm() / doubled[name].norm().clamp(min=1e-12)
        assert error < 1e-5, (name, error.item())


def test_micro_batch_default_leaves_the_users_config_alone_and_odd_sizes_as_set(tiny_model_dir, tmp_path):
    config = PolicySplitConfig(**trainer_settings(tmp_path, per_device_train_batch_size=BATCH, num_generations=4))
    trainer = PolicySplitTrainer(
        model=tiny_model_dir, reward_funcs=digit_reward, args=config, train_dataset=conversational_dataset()
    )
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (BATCH, 1)
    assert (trainer.args.per_device_train_batch_size, trainer.args.steps_per_generation) == (BATCH // 2, 2)
    odd = PolicySplitConfig(
        **trainer_settings(tmp_path, per_device_train_batch_size=3, num_generations=2, steps_per_generation=2)
    )
    trainer = PolicySplitTrainer(
        model=tiny_model_dir, reward_funcs=digit_reward, args=odd, train_dataset=conversational_dataset()
    )
    assert trainer.args.per_device_train_batch_size == 3 and trainer.args is odd
