"""Policy Split through TRL's vLLM generation path, at the vLLM client boundary: the main suite's fast checks.

The real engine runs in tests/real_vllm (`bash scripts/run_vllm_tests.sh`, vLLM's CPU build here): every trainer trains
against a `trl vllm-serve` process and a colocated engine. These tests need no vLLM and take seconds, and they check
what the real tier cannot see: which prompt each completion was sampled from. They replace only the vLLM server
client (`VLLMGeneration.vllm_client`) and the colocated engine (`VLLMGeneration.llm`, plus vLLM's `SamplingParams`)
with stand-ins that reproduce their contracts: `VLLMClient.generate` returns `n` completions per prompt,
prompt-major, with one log-prob per token; `LLM.generate` returns `RequestOutput`-shaped objects read by TRL's
`extract_logprobs`. Everything around them is real: TRL's `VLLMGeneration.generate` (server dedup
`all_prompts[::num_generations]`, colocate `n=1`), `GRPOTrainer._generate_single_turn` and the `PolicySplitTrainer`
on the tiny offline model.

The stand-ins generate with the tiny model itself, from exactly the prompt they were given: each completion starts
with two marker tokens (index of its prompt among the prompts the stand-in saw, index of the sample), followed by
sampled tokens, and carries the tiny model's real log-probs for all its tokens. A completion thus names the prompt it
came from, and its log-probs match the trainer's recomputed ones only under that same prompt. They also cover
settings the real tier does not run (6 completions, plain-text prompts, the per-mode ablation, evaluation groups)
and the control showing that TRL's own dedup would sample the high-entropy rows from the normal prompt.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from tiny import conversational_dataset, digit_reward, text_dataset
from trl import GRPOTrainer
from trl.generation import vllm_generation
from trl.generation.vllm_generation import VLLMGeneration

from trl_policysplit import PolicySplitConfig, PolicySplitTrainer
from trl_policysplit.policy_split_trainer import CONTEXT_KEY, IS_CROSS_KEY

MAX_COMPLETION_LENGTH = 6
MARKER_BASE = 100  # marker tokens are ordinary BPE tokens, far from the special ids 0..2
QUESTIONS = 2  # questions per generation batch in the direct `_generate_and_score_completions` tests


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """The tiny model's matmuls are microseconds: intra-op threads only add contention (10-100x on busy CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------------
# Stand-ins for vLLM


@dataclass
class Completion:
    """One sampled completion: its token ids and the sampler's log-prob of each token."""

    token_ids: list[int]
    logprobs: list[float]


class TinySampler:
    """Samples from the tiny model, from exactly the prompt it is given, tagging completions with markers."""

    def __init__(self, model: torch.nn.Module, eos_token_id: int, seed: int = 0) -> None:
        self.model = model
        self.eos_token_id = eos_token_id
        self.prompts: list[list[int]] = []  # distinct prompts, in the order first seen
        self._index: dict[tuple[int, ...], int] = {}
        self._generator = torch.Generator().manual_seed(seed)

    def prompt_index(self, prompt_ids: list[int]) -> int:
        key = tuple(prompt_ids)
        if key not in self._index:
            self._index[key] = len(self.prompts)
            self.prompts.append(list(prompt_ids))
        return self._index[key]

    def source(self, completion_ids: list[int]) -> tuple[list[int], int]:
        """The prompt a completion was generated from, and its sample index among that request's n."""
        return self.prompts[completion_ids[0] - MARKER_BASE], completion_ids[1] - MARKER_BASE

    @torch.no_grad()
    def _logits(self, ids: list[int], temperature: float) -> torch.Tensor:
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu()
        return logits / temperature

    def complete(self, prompt_ids: list[int], n: int, temperature: float, max_tokens: int) -> list[Completion]:
        prompt_ids = list(prompt_ids)
        marker = MARKER_BASE + self.prompt_index(prompt_ids)
        assert max(marker, MARKER_BASE + n - 1) < self.model.config.vocab_size, "marker tokens out of vocabulary"
        completions = []
        for sample in range(n):
            tokens = [marker, MARKER_BASE + sample]
            while len(tokens) < max_tokens and tokens[-1] != self.eos_token_id:
                probs = self._logits(prompt_ids + tokens, temperature)[-1].softmax(-1)
                tokens.append(int(torch.multinomial(probs, 1, generator=self._generator)))
            logps = self._logits(prompt_ids + tokens, temperature)[len(prompt_ids) - 1 : -1].log_softmax(-1)
            picked = logps.gather(1, torch.tensor(tokens).unsqueeze(1)).squeeze(1)
            completions.append(Completion(tokens, picked.tolist()))
        return completions


@dataclass
class ServerCall:
    prompts: list[list[int]]
    n: int
    sampling: dict[str, Any]
    returned: int = 0  # completions sent back


class StandInVLLMClient:
    """`VLLMClient.generate`'s contract: `n` completions per prompt, prompt-major, `[logprob]` per token."""

    def __init__(self, sampler: TinySampler) -> None:
        self.sampler = sampler
        self.calls: list[ServerCall] = []

    def generate(
        self,
        prompts: list[list[int]],
        features: list[dict | None] | None = None,
        n: int = 1,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        max_tokens: int = 16,
        logprobs: int | None = 0,
        structured_outputs_regex: str | None = None,
        generation_kwargs: dict | None = None,
    ) -> dict[str, Any]:
        assert features is None, "text-only prompts send no image features"
        sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "max_tokens": max_tokens}
        completions = [c for p in prompts for c in self.sampler.complete(p, n, temperature, max_tokens)]
        self.calls.append(ServerCall([list(p) for p in prompts], n, sampling, len(completions)))
        return {
            "prompt_ids": [list(p) for p in prompts],
            "completion_ids": [c.token_ids for c in completions],
            "logprobs": None if logprobs is None else [[[lp] for lp in c.logprobs] for c in completions],
            "logprob_token_ids": None if logprobs is None else [[[t] for t in c.token_ids] for c in completions],
        }


class StandInSamplingParams:
    """vLLM's `SamplingParams`: keeps its keyword arguments as attributes."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


@dataclass
class StandInLogprob:
    logprob: float
    rank: int
    decoded_token: str | None = None


@dataclass
class StandInCompletionOutput:
    index: int
    token_ids: list[int]
    logprobs: list[dict[int, StandInLogprob]] | None


@dataclass
class StandInRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[StandInCompletionOutput] = field(default_factory=list)


class StandInLLM:
    """`vllm.LLM.generate`'s contract: one `RequestOutput` per prompt, in order, with `n` outputs each."""

    def __init__(self, sampler: TinySampler) -> None:
        self.sampler = sampler
        self.calls: list[ServerCall] = []

    def generate(
        self, prompts: list[dict[str, Any]], sampling_params: StandInSamplingParams, use_tqdm: bool = True
    ) -> list[StandInRequestOutput]:
        params = sampling_params
        prompt_ids = [list(p["prompt_token_ids"]) for p in prompts]
        results = []
        for ids in prompt_ids:
            outputs = []
            for index, c in enumerate(self.sampler.complete(ids, params.n, params.temperature, params.max_tokens)):
                logprobs = None
                if params.logprobs is not None:
                    logprobs = [{t: StandInLogprob(lp, rank=1)} for t, lp in zip(c.token_ids, c.logprobs, strict=True)]
                outputs.append(StandInCompletionOutput(index, c.token_ids, logprobs))
            results.append(StandInRequestOutput(ids, outputs))
        sampling = {"temperature": params.temperature, "max_tokens": params.max_tokens}
        self.calls.append(ServerCall(prompt_ids, params.n, sampling, sum(len(r.outputs) for r in results)))
        return results


def attach_vllm(trainer: GRPOTrainer, mode: str, monkeypatch: pytest.MonkeyPatch) -> StandInVLLMClient | StandInLLM:
    """Give the trainer a real `VLLMGeneration` (without its vLLM-loading __init__) around a stand-in backend."""
    tokenizer = trainer.processing_class
    sampler = TinySampler(trainer.model, tokenizer.eos_token_id)
    generation = object.__new__(VLLMGeneration)
    # Exactly what `GRPOTrainer.__init__` passes and `VLLMGeneration.generate` reads.
    generation.model = trainer.model
    generation.accelerator = trainer.accelerator
    generation.processing_class = tokenizer
    generation.mode = mode
    generation.structured_outputs_regex = trainer.args.vllm_structured_outputs_regex
    generation.tensor_parallel_size = 1
    generation.enable_sleep_mode = False
    generation.repetition_penalty = trainer.repetition_penalty
    generation.temperature = trainer.temperature
    generation.top_p = trainer.top_p
    generation.top_k = trainer.top_k
    generation.min_p = trainer.min_p
    generation.max_completion_length = trainer.max_completion_length
    generation.logprobs = 0
    generation.generation_kwargs = trainer.args.generation_kwargs or {}
    generation.sync_weights = lambda: None  # the stand-in samples from the training model itself
    backend: StandInVLLMClient | StandInLLM
    if mode == "server":
        backend = generation.vllm_client = StandInVLLMClient(sampler)
    else:
        backend = generation.llm = StandInLLM(sampler)
        monkeypatch.setattr(vllm_generation, "SamplingParams", StandInSamplingParams, raising=False)
    trainer.use_vllm = True
    trainer.vllm_mode = mode
    trainer.vllm_generation = generation
    trainer._last_loaded_step = trainer.state.global_step
    return backend


# --------------------------------------------------------------------------------------------------------------
# Helpers


def make_trainer(model_dir: str, tmp_path, num_generations: int, dataset=None, **overrides: Any) -> PolicySplitTrainer:
    """A tiny PolicySplitTrainer; vLLM is attached afterwards (its __init__ would import vllm)."""
    dataset = dataset if dataset is not None else conversational_dataset(8)
    args = PolicySplitConfig(
        output_dir=str(tmp_path),
        num_generations=num_generations,
        per_device_train_batch_size=num_generations * QUESTIONS,
        max_completion_length=MAX_COMPLETION_LENGTH,
        learning_rate=1e-3,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        bf16=False,
        seed=0,
        **overrides,
    )
    return PolicySplitTrainer(model=model_dir, reward_funcs=digit_reward, args=args, train_dataset=dataset)


def sampler_batch(dataset, num_generations: int, questions: int = QUESTIONS) -> list[dict[str, Any]]:
    """Rows as TRL's RepeatSampler lays them out: each question repeated `num_generations` times in a row."""
    return [dict(dataset[q]) for q in range(questions) for _ in range(num_generations)]


def unpad(ids: torch.Tensor, mask: torch.Tensor) -> list[int]:
    return ids[mask.bool()].tolist()


def row_prompts(output: dict[str, Any], rows: int) -> list[list[int]]:
    return [unpad(output["prompt_ids"][i], output["prompt_mask"][i]) for i in range(rows)]


def row_completions(output: dict[str, Any], rows: int) -> list[list[int]]:
    return [unpad(output["completion_ids"][i], output["completion_mask"][i]) for i in range(rows)]


def is_high_entropy(trainer: PolicySplitTrainer, prompt_ids: list[int]) -> bool:
    return trainer.args.high_entropy_prompt in trainer.processing_class.decode(prompt_ids)


def assert_generated_rows(
    trainer: PolicySplitTrainer,
    sampler: TinySampler,
    output: dict[str, Any],
    num_generations: int,
    questions: int,
    per_request: int,
) -> None:
    """Each generated row's completion came from that row's own prompt, sample `i % per_request` of its request.

    With `per_request = n` (server mode) this pins the order to [q0 normal x n, q0 HE x n, q1 normal x n, ...].
    """
    n = num_generations // 2
    rows = questions * num_generations
    expected_high = [i % num_generations >= n for i in range(rows)]
    assert output[CONTEXT_KEY][:rows].bool().tolist() == expected_high
    prompts, completions = row_prompts(output, rows), row_completions(output, rows)
    for i in range(rows):
        source, sample = sampler.source(completions[i])
        assert source == prompts[i], f"row {i}: completion was generated from another prompt"
        assert is_high_entropy(trainer, source) == expected_high[i]
        assert sample == i % per_request, f"row {i}: completions are not in [q normal x n, q HE x n, ...] order"
    for q in range(questions):
        block = prompts[q * num_generations : (q + 1) * num_generations]
        assert block[:n] == [block[0]] * n and block[n:] == [block[n]] * n and block[0] != block[n]
    assert_sampled_under_own_prompt(output, rows)


def assert_policy_split_pairing(
    trainer: PolicySplitTrainer,
    sampler: TinySampler,
    output: dict[str, Any],
    num_generations: int,
    questions: int,
    per_request: int,
) -> None:
    """Generated rows paired with their own prompts, then cross pairs: same ids behind the other mode's prompt."""
    n = num_generations // 2
    rows = questions * num_generations
    assert output["completion_ids"].size(0) == 2 * rows  # generated rows, then their cross pairs
    assert output[IS_CROSS_KEY].bool().tolist() == [False] * rows + [True] * rows
    assert_generated_rows(trainer, sampler, output, num_generations, questions, per_request)
    prompts, completions = row_prompts(output, 2 * rows), row_completions(output, 2 * rows)
    for i in range(rows):
        partner = i - n if i % num_generations >= n else i + n
        assert completions[rows + i] == completions[i]
        assert prompts[rows + i] == prompts[partner]


def assert_sampled_under_own_prompt(output: dict[str, Any], rows: int) -> None:
    """Independent of the markers: the sampler's log-probs equal the trainer's under each row's own prompt."""
    mask = output["completion_mask"][:rows].bool()
    sampled, recomputed = output["sampling_per_token_logps"][:rows], output["old_per_token_logps"][:rows]
    torch.testing.assert_close(sampled[mask], recomputed[mask], atol=1e-4, rtol=1e-4)


def assert_importance_sampling(output: dict[str, Any], rows: int) -> None:
    """vLLM IS correction: 2x rows; exactly 1 for cross pairs, about 1 for generated rows (exact sampler logps)."""
    ratio, sampled = output["importance_sampling_ratio"], output["sampling_per_token_logps"]
    assert ratio.size(0) == 2 * rows and sampled.size(0) == 2 * rows
    assert torch.equal(ratio[rows:], torch.ones_like(ratio[rows:]))
    torch.testing.assert_close(ratio[:rows], torch.ones_like(ratio[:rows]), atol=1e-3, rtol=0)
    # Cross pairs were not sampled under their context: their "sampling" log-probs are the scoring forward's.
    torch.testing.assert_close(sampled[rows:], output["old_per_token_logps"][rows:])


def assert_server_request(
    trainer: PolicySplitTrainer, call: ServerCall, output: dict[str, Any], num_generations: int, questions: int
) -> None:
    """The server got one normal and one high-entropy prompt per question, in row order, with n per mode."""
    n = num_generations // 2
    assert call.n == n
    assert call.sampling["max_tokens"] == MAX_COMPLETION_LENGTH
    assert len(call.prompts) == 2 * questions
    prompts = row_prompts(output, questions * num_generations)
    for q in range(questions):
        assert call.prompts[2 * q] == prompts[q * num_generations]
        assert call.prompts[2 * q + 1] == prompts[q * num_generations + n]
        assert not is_high_entropy(trainer, call.prompts[2 * q])
        assert is_high_entropy(trainer, call.prompts[2 * q + 1])
    assert call.returned == 2 * questions * n == questions * num_generations  # n per mode per question


# --------------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize(
    ("num_generations", "dataset_name"), [(4, "conversational"), (6, "conversational"), (4, "text")]
)
def test_server_mode_samples_each_mode_from_its_own_prompt(
    tiny_model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch, num_generations: int, dataset_name: str
) -> None:
    """Server mode: one request per mode per question, n = num_generations // 2, completions in row order."""
    dataset = conversational_dataset(8) if dataset_name == "conversational" else text_dataset(8)
    trainer = make_trainer(tiny_model_dir, tmp_path, num_generations, dataset)
    client = attach_vllm(trainer, "server", monkeypatch)
    trainer.model.train()
    output = trainer._generate_and_score_completions(sampler_batch(dataset, num_generations))

    assert len(client.calls) == 1
    assert_server_request(trainer, client.calls[0], output, num_generations, QUESTIONS)
    assert_policy_split_pairing(trainer, client.sampler, output, num_generations, QUESTIONS, num_generations // 2)
    assert_importance_sampling(output, QUESTIONS * num_generations)


@pytest.mark.parametrize(("share_rollouts", "evaluate"), [(False, False), (True, True)])
def test_server_mode_per_mode_request_in_ablation_and_eval(
    tiny_model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch, share_rollouts: bool, evaluate: bool
) -> None:
    """The per-mode request also holds in the per-mode ablation (TRL groups rewards by n there) and in evaluation,
    whose group size is `num_generations_eval` (6 here, against 4 for training)."""
    group = 6 if evaluate else 4
    dataset = conversational_dataset(8)
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path,
        4,
        dataset,
        share_rollouts=share_rollouts,
        num_generations_eval=6 if evaluate else None,
    )
    client = attach_vllm(trainer, "server", monkeypatch)
    trainer.model.train(not evaluate)
    output = trainer._generate_and_score_completions(sampler_batch(dataset, group))

    rows = QUESTIONS * group
    assert len(client.calls) == 1
    assert_server_request(trainer, client.calls[0], output, group, QUESTIONS)
    assert output["completion_ids"].size(0) == (2 * rows if share_rollouts else rows)
    assert_generated_rows(trainer, client.sampler, output, group, QUESTIONS, group // 2)


@pytest.mark.parametrize("num_generations", [4, 6])
def test_colocate_mode_samples_each_row_from_its_own_prompt(
    tiny_model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch, num_generations: int
) -> None:
    """Colocate mode: every row's prompt goes to the engine with n=1, in row order."""
    dataset = conversational_dataset(8)
    trainer = make_trainer(tiny_model_dir, tmp_path, num_generations, dataset)
    llm = attach_vllm(trainer, "colocate", monkeypatch)
    trainer.model.train()
    output = trainer._generate_and_score_completions(sampler_batch(dataset, num_generations))

    rows = QUESTIONS * num_generations
    assert len(llm.calls) == 1
    assert llm.calls[0].n == 1 and llm.calls[0].returned == rows
    assert llm.calls[0].prompts == row_prompts(output, rows)
    assert_policy_split_pairing(trainer, llm.sampler, output, num_generations, QUESTIONS, per_request=1)
    assert_importance_sampling(output, rows)


def test_server_mode_without_per_mode_dedup_loses_the_high_entropy_prompt(
    tiny_model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: GRPOTrainer's own `_generate_single_turn` (num_generations unchanged) samples every completion of
    a question from its first (normal) prompt, so the stand-in reproduces the dedup that the trainer works around."""
    num_generations, n = 4, 2
    dataset = conversational_dataset(8)
    trainer = make_trainer(tiny_model_dir, tmp_path, num_generations, dataset)
    client = attach_vllm(trainer, "server", monkeypatch)
    trainer._generate_single_turn = types.MethodType(GRPOTrainer._generate_single_turn, trainer)
    trainer.model.train()
    output = trainer._generate_and_score_completions(sampler_batch(dataset, num_generations))

    rows = QUESTIONS * num_generations
    assert len(client.calls) == 1 and client.calls[0].n == num_generations
    assert len(client.calls[0].prompts) == QUESTIONS
    assert not any(is_high_entropy(trainer, p) for p in client.calls[0].prompts)
    prompts, completions = row_prompts(output, rows), row_completions(output, rows)
    for i in range(rows):
        source, sample = client.sampler.source(completions[i])
        question_start = i - i % num_generations
        assert source == prompts[question_start] and sample == i % num_generations
        assert (source == prompts[i]) == (i % num_generations < n)  # HE rows got normal-mode completions
    # The mismatch is visible in the log-probs too: HE rows were scored under a prompt they were not sampled from.
    mask = output["completion_mask"][:rows].bool()
    diff = (output["sampling_per_token_logps"][:rows] - output["old_per_token_logps"][:rows]).abs() * mask
    high = torch.tensor([i % num_generations >= n for i in range(rows)])
    assert diff[~high].max() < 1e-4
    assert diff[high].max() > 1e-2
    with pytest.raises(AssertionError):
        assert_generated_rows(trainer, client.sampler, output, num_generations, QUESTIONS, n)


@pytest.mark.parametrize("mode", ["server", "colocate"])
def test_the_authors_sample_count_sends_num_generations_per_mode(
    tiny_model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """completions_per_mode="num_generations": 4 completions per mode (8 per question), one request per mode per
    question in server mode, every row from its own prompt in colocate mode."""
    dataset = conversational_dataset(8)
    trainer = make_trainer(tiny_model_dir, tmp_path, 4, dataset, completions_per_mode="num_generations")
    assert trainer.num_generations == 8
    client = attach_vllm(trainer, mode, monkeypatch)
    trainer.model.train()
    output = trainer._generate_and_score_completions(sampler_batch(dataset, 8))
    assert len(client.calls) == 1
    if mode == "server":
        assert_server_request(trainer, client.calls[0], output, 8, QUESTIONS)
    assert_policy_split_pairing(trainer, client.sampler, output, 8, QUESTIONS, 4 if mode == "server" else 1)
    assert_importance_sampling(output, QUESTIONS * 8)
