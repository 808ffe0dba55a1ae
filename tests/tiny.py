"""A tiny offline model, tokenizer and dataset: the tests never touch the model hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "What is 3 + 4? The answer is 7.",
    "Explore an unusual line of thought before you answer.",
    "Compute 12 minus 5, then add 9. Answer: 16",
    "system user assistant: think step by step and give the final answer.",
    "Approach this problem the way few people would, weigh several different perspectives.",
] * 20


def build_tiny_model(
    directory: str | os.PathLike, hidden_size: int = 32, num_attention_heads: int = 4, num_key_value_heads: int = 2
) -> str:
    """Train a byte-level BPE on a toy corpus and save it with a 2-layer Qwen2 model; returns the directory.

    The default head size (8) keeps the main suite fast; vLLM's CPU attention needs 32 or more (tests/real_vllm)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(directory)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    return str(directory)


def conversational_dataset(size: int = 16) -> Dataset:
    """Questions as chat prompts, half of them with a system message, with an `answer` column."""
    rows = []
    for i in range(size):
        messages = [{"role": "user", "content": f"What is {i % 7} + {i % 5}?"}]
        if i % 2:
            messages.insert(0, {"role": "system", "content": "Answer briefly."})
        rows.append({"prompt": messages, "answer": str(i % 7 + i % 5)})
    return Dataset.from_list(rows)


def text_dataset(size: int = 16) -> Dataset:
    return Dataset.from_list(
        [{"prompt": f"Compute {i % 7} plus {i % 5}.", "answer": str(i % 7 + i % 5)} for i in range(size)]
    )


def _text(completion) -> str:
    return completion if isinstance(completion, str) else completion[0]["content"]


def digit_reward(completions, **kwargs) -> list[float]:
    """Deterministic reward that varies between random completions: 1 when the completion has a digit."""
    return [float(any(ch.isdigit() for ch in _text(c))) for c in completions]


def length_reward(completions, **kwargs) -> list[float]:
    return [min(len(_text(c)), 20) / 20.0 for c in completions]


def trainer_settings(tmp_path, **overrides) -> dict:
    """Config values for a short CPU run of any trainer on the tiny model: 2 steps, lr 1e-2, no saving."""
    values = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 8,
        "max_steps": 2,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
    }
    values.update(overrides)
    return values


def forward_logps(trainer, batch: dict):
    """Log-probs of every completion token from the trainer's scoring forward, with the trainer's chunk size."""
    import torch

    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            input_ids,
            attention_mask,
            batch["completion_ids"].size(1),
            batch_size=getattr(trainer, "scoring_batch_size", trainer.args.per_device_train_batch_size),
        )
    return logps


def trainer_logps(trainer, batch: dict):
    """The log-probs the trainer itself used for every row: the sampler's (recorded during generation; for Policy
    Split's cross pairs, its scoring forward's, which the batch carries in the same key), else its scoring forward.

    Checks of the shaping math need the very numbers the trainer used: the near-uniform tiny model's surprisals have
    a small spread, so float noise between scoring paths (bf16 autocast by TRL's default) is amplified by a z-score
    or decides an argmax. Tests compare these numbers with an independent forward separately.
    """
    if batch.get("sampling_per_token_logps") is not None and trainer._sampler_logps_are_model_logps():
        return batch["sampling_per_token_logps"]
    return forward_logps(trainer, batch)


def generate_with_rewards(trainer, rows: list) -> tuple[dict, Any]:
    """`_generate_and_score_completions(rows)` and the rewards TRL gathered for it (every process's, per function):
    checks of the shaping math recompute the advantages from them. The trainer keeps no rewards after the call, so
    the test listens to `_calculate_rewards` on this instance for the call's length."""
    captured = []
    calculate = trainer._calculate_rewards

    def listening(*args, **kwargs):
        captured.append(calculate(*args, **kwargs))
        return captured[-1]

    trainer._calculate_rewards = listening
    try:
        batch = trainer._generate_and_score_completions(rows)
    finally:
        del trainer._calculate_rewards
    assert len(captured) == 1
    return batch, captured[0]
