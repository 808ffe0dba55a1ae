"""What the real-engine tier checks on every trainer, in both vLLM modes.

A `Recorder` wraps, on one trainer, what crosses the engine boundary: the requests the engine received (the
client's `generate` in server mode, the colocated `LLM.generate`), what TRL's `VLLMGeneration.generate` returned,
every weight sync (followed by a probe that scores a fixed sequence on the engine and with the trainer's model),
and every batch `_generate_and_score_completions` built. transformers' `generate` is replaced by a failure.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass, field
from typing import Any

import torch
from tiny import conversational_dataset, digit_reward, trainer_settings
from trl import GRPOConfig, GRPOTrainer

from trl_policysplit import (
    AsymGRPOConfig,
    AsymGRPOTrainer,
    DiPOConfig,
    DiPOTrainer,
    PolicySplitConfig,
    PolicySplitTrainer,
)
from trl_policysplit.policy_split_trainer import CONTEXT_KEY, IS_CROSS_KEY
from trl_policysplit.vllm_cpu import cpu_weight_sync

# Engine and trainer both run in float32: the probe agrees to 5e-7 nats per token here. A stale tied lm_head is
# off by nats; two optimizer steps at lr 1e-2 move the probe by 0.7-1.1.
WEIGHT_TOLERANCE = 1e-5
# The cross rows' log-probs against an independent forward of the same padded ids by the same weights (1e-6 here).
CROSS_TOLERANCE = 1e-5
STEPS = 2
PROBE_TEXT = "What is 3 + 4? The answer is 7."

TRAINERS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "GRPOTrainer": (GRPOTrainer, GRPOConfig, {}),
    "PolicySplitTrainer": (PolicySplitTrainer, PolicySplitConfig, {}),
    "AsymGRPOTrainer": (AsymGRPOTrainer, AsymGRPOConfig, {}),
    "DiPOTrainer": (DiPOTrainer, DiPOConfig, {}),
    # The authors' sample count too: num_generations completions per mode.
    "PolicySplitTrainer+AsymGRPO+DiPO": (
        PolicySplitTrainer,
        PolicySplitConfig,
        {"asymmetric_advantages": True, "perplexity_reallocation": True, "completions_per_mode": "num_generations"},
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_trainer(name: str, model_dir: str, tmp_path, mode: str, port: int | None = None, server_timeout: float = 30):
    trainer_class, config_class, extra = TRAINERS[name]
    settings = trainer_settings(
        tmp_path, use_vllm=True, vllm_mode=mode, bf16=False, max_steps=STEPS, learning_rate=1e-2, **extra
    )
    if mode == "server":
        settings.update(vllm_server_host="127.0.0.1", vllm_server_port=port, vllm_server_timeout=server_timeout)
    else:
        settings.update(vllm_max_model_length=256)
    args = config_class(**settings)
    kwargs = {
        "model": model_dir,
        "reward_funcs": digit_reward,
        "args": args,
        "train_dataset": conversational_dataset(),
    }
    if trainer_class is GRPOTrainer:  # the baseline: stock TRL, with the CPU weight sync where CUDA is absent
        with cpu_weight_sync():
            return trainer_class(**kwargs)
    return trainer_class(**kwargs)


@dataclass
class EngineCall:
    prompts: list[list[int]]
    n: int


@dataclass
class Recorder:
    trainer: Any
    mode: str
    engine_calls: list[EngineCall] = field(default_factory=list)
    generations: list[tuple[list[list[int]], list[list[int]], list[list[float]]]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    cross_reference: list[torch.Tensor] = field(default_factory=list)
    syncs: list[tuple[int, float, torch.Tensor]] = field(default_factory=list)  # (step, max |diff|, engine probe)

    def __post_init__(self) -> None:
        trainer, generation = self.trainer, self.trainer.vllm_generation
        self.probe = trainer.processing_class(PROBE_TEXT)["input_ids"]

        def refuse_transformers_generate(*args, **kwargs):
            raise AssertionError("transformers' generate ran although use_vllm=True")

        trainer.model.generate = refuse_transformers_generate

        if self.mode == "server":
            client_generate = generation.vllm_client.generate

            def server_generate(prompts, **kwargs):
                self.engine_calls.append(EngineCall([list(p) for p in prompts], kwargs["n"]))
                return client_generate(prompts=prompts, **kwargs)

            generation.vllm_client.generate = server_generate
        else:
            llm_generate = self._llm_generate = generation.llm.generate

            def colocated_generate(prompts, sampling_params=None, **kwargs):
                self.engine_calls.append(EngineCall([list(p["prompt_token_ids"]) for p in prompts], sampling_params.n))
                return llm_generate(prompts, sampling_params=sampling_params, **kwargs)

            generation.llm.generate = colocated_generate

        trl_generate = generation.generate

        def recorded_generate(*args, **kwargs):
            prompt_ids, completion_ids, logprobs, token_ids = trl_generate(*args, **kwargs)
            self.generations.append((prompt_ids, completion_ids, [[lp[0] for lp in seq] for seq in logprobs]))
            return prompt_ids, completion_ids, logprobs, token_ids

        generation.generate = recorded_generate

        sync = generation.sync_weights

        def recorded_sync():
            sync()
            engine = self.engine_probe()
            reference = self.trainer_probe()
            self.syncs.append((trainer.state.global_step, (engine - reference).abs().max().item(), engine))

        generation.sync_weights = recorded_sync

        generate_and_score = trainer._generate_and_score_completions

        def recorded_generate_and_score(inputs):
            output = generate_and_score(inputs)
            self.batches.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()})
            if IS_CROSS_KEY in output:
                self.cross_reference.append(self.plain_forward_logps(output, output[IS_CROSS_KEY].bool()))
            return output

        trainer._generate_and_score_completions = recorded_generate_and_score

    # -- probes ---------------------------------------------------------------------------------------------------

    def engine_probe(self) -> torch.Tensor:
        """The engine's log-prob of every probe token after the first (its prompt log-probs)."""
        generation = self.trainer.vllm_generation
        if self.mode == "server":
            scored = generation.vllm_client.get_sequence_logprobs([self.probe], prompt_lengths=[1], top_logprobs=1)
            return torch.tensor([position[0] for position in scored["actual_logprobs"][0]])
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        (output,) = self._llm_generate([{"prompt_token_ids": self.probe}], params, use_tqdm=False)  # unrecorded
        return torch.tensor(
            [entry[token].logprob for entry, token in zip(output.prompt_logprobs[1:], self.probe[1:], strict=True)]
        )

    @torch.no_grad()
    def trainer_probe(self) -> torch.Tensor:
        ids = torch.tensor([self.probe])
        logps = self.trainer.model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        return logps.gather(1, ids[0, 1:, None])[:, 0]

    @torch.no_grad()
    def plain_forward_logps(self, output: dict[str, Any], rows: torch.Tensor) -> torch.Tensor:
        """Log-probs of the rows' completion tokens from one plain transformers forward of the batch's ids."""
        prompt_ids, completion_ids = output["prompt_ids"][rows], output["completion_ids"][rows]
        ids = torch.cat([prompt_ids, completion_ids], dim=1)
        mask = torch.cat([output["prompt_mask"][rows], output["completion_mask"][rows]], dim=1)
        logits = self.trainer.model(input_ids=ids, attention_mask=mask).logits.float()
        logits = logits[:, prompt_ids.size(1) - 1 : -1] / self.trainer.temperature
        return logits.log_softmax(-1).gather(2, completion_ids.unsqueeze(-1)).squeeze(-1)


def train_and_record(trainer, mode: str) -> Recorder:
    recorder = Recorder(trainer, mode)
    trainer.train()
    trainer.vllm_generation.sync_weights()  # after the last optimizer step too
    return recorder


# -- checks -------------------------------------------------------------------------------------------------------


def check_generation_came_from_vllm(recorder: Recorder) -> None:
    """Every batch's generated rows are the engine's completions, with the engine's log-probs as sampling ones."""
    assert recorder.engine_calls and len(recorder.generations) == len(recorder.batches) == len(recorder.engine_calls)
    for (prompts, completions, logprobs), batch in zip(recorder.generations, recorder.batches, strict=True):
        rows = len(completions)
        mask = batch["completion_mask"][:rows].bool()
        assert [batch["completion_ids"][i][mask[i]].tolist() for i in range(rows)] == [list(c) for c in completions]
        assert [batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist() for i in range(rows)] == [
            list(p) for p in prompts
        ]
        sampled = batch["sampling_per_token_logps"][:rows]
        for i, row_logprobs in enumerate(logprobs):
            assert sampled[i][mask[i]].tolist() == torch.tensor(row_logprobs, dtype=sampled.dtype).tolist()


def check_engine_weights_follow_the_trainer(recorder: Recorder) -> None:
    """One sync before each optimizer step's generation and one after the last step; after each, the engine
    scores the probe as the trainer's model does, and the probe moved as the weights did."""
    steps = [step for step, _, _ in recorder.syncs]
    assert steps == list(range(STEPS + 1))
    assert max(diff for _, diff, _ in recorder.syncs) < WEIGHT_TOLERANCE, recorder.syncs
    moved = (recorder.syncs[-1][2] - recorder.syncs[0][2]).abs().max().item()
    assert moved > 1000 * WEIGHT_TOLERANCE


def check_importance_sampling(recorder: Recorder) -> None:
    """TRL's vLLM importance-sampling correction, recomputed from the batch: the same formula on GRPOTrainer's
    rows and on ours; Policy Split's cross rows (never sampled in their context) get exactly 1."""
    trainer = recorder.trainer
    assert trainer.vllm_importance_sampling_correction
    for (_, completions, _), batch in zip(recorder.generations, recorder.batches, strict=True):
        rows = len(completions)
        mask = batch["completion_mask"].float()
        diff = ((batch["old_per_token_logps"] - batch["sampling_per_token_logps"]) * mask)[:rows]
        sequence_level = trainer.vllm_importance_sampling_mode.startswith("sequence")
        ratio = torch.exp(diff.sum(-1, keepdim=True) if sequence_level else diff)
        expected = ratio.clamp(trainer.vllm_importance_sampling_clip_min, trainer.vllm_importance_sampling_clip_max)
        got = batch["importance_sampling_ratio"]
        torch.testing.assert_close(got[:rows], expected, rtol=1e-6, atol=1e-7)
        assert torch.equal(got[rows:], torch.ones_like(got[rows:]))
    logged = [entry for entry in trainer.state.log_history if "sampling/importance_sampling_ratio/mean" in entry]
    assert len(logged) == STEPS
    assert all(math.isclose(entry["sampling/importance_sampling_ratio/mean"], 1.0, abs_tol=1e-2) for entry in logged)


def check_policy_split_requests(recorder: Recorder) -> None:
    """The engine got the high-entropy instruction on exactly the high-entropy rows, each mode the configured
    number of completions per question, in one request per generation batch."""
    trainer = recorder.trainer
    per_mode = trainer.num_generations // 2
    instruction = trainer.args.high_entropy_prompt
    group = trainer.num_generations
    for call, (_, completions, _), batch in zip(
        recorder.engine_calls, recorder.generations, recorder.batches, strict=True
    ):
        rows = len(completions)
        context = batch[CONTEXT_KEY][:rows].tolist()
        # Each engine prompt expands to `call.n` consecutive rows.
        expanded = [prompt for prompt in call.prompts for _ in range(call.n)]
        assert len(expanded) == rows
        assert call.n == (per_mode if recorder.mode == "server" else 1)
        for prompt, high in zip(expanded, context, strict=True):
            assert (instruction in trainer.processing_class.decode(prompt)) == bool(high)
        for start in range(0, rows, group):
            block = context[start : start + group]
            assert block == [0] * per_mode + [1] * per_mode
            assert len({tuple(p) for p in expanded[start : start + per_mode]}) == 1  # one question per block
        assert batch[IS_CROSS_KEY].tolist() == [0] * rows + [1] * rows
        # Cross row `rows + i`: row i's completion behind the prompt of its partner (same question, other mode).
        prompts = [batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist() for i in range(2 * rows)]
        completions = [
            batch["completion_ids"][i][batch["completion_mask"][i].bool()].tolist() for i in range(2 * rows)
        ]
        for i in range(rows):
            partner = i + per_mode if i % group < per_mode else i - per_mode
            assert completions[rows + i] == completions[i] and prompts[rows + i] == prompts[partner]


def check_cross_rows_match_a_plain_forward(recorder: Recorder) -> None:
    """Cross rows (each completion behind the other mode's prompt) carry log-probs equal to an independent plain
    transformers forward of the same ids."""
    assert len(recorder.cross_reference) == len(recorder.batches)
    for reference, batch in zip(recorder.cross_reference, recorder.batches, strict=True):
        cross = batch[IS_CROSS_KEY].bool()
        mask = batch["completion_mask"][cross].bool()
        for key in ("old_per_token_logps", "sampling_per_token_logps"):
            torch.testing.assert_close(batch[key][cross][mask], reference[mask], atol=CROSS_TOLERANCE, rtol=0)


def check_trained(recorder: Recorder) -> None:
    trainer = recorder.trainer
    assert trainer.state.global_step == STEPS
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == STEPS and all(math.isfinite(loss) for loss in losses)
    check_generation_came_from_vllm(recorder)
    check_engine_weights_follow_the_trainer(recorder)
    check_importance_sampling(recorder)
    if isinstance(trainer, PolicySplitTrainer):
        check_policy_split_requests(recorder)
        check_cross_rows_match_a_plain_forward(recorder)
    else:
        rows = len(recorder.generations[0][1])
        assert recorder.batches[0]["completion_ids"].size(0) == rows  # no cross rows outside Policy Split
