"""Models with a real architecture's shapes and random weights, for cost benchmarks on machines without downloads.

A step's cost depends on the shapes (layers, widths, vocabulary, sequence lengths), not on the weights' values, and
the overhead benchmark forces every completion to full length. So `overhead --model random-qwen3-1.7b` measures the
cost of Qwen3-1.7B with nothing fetched: the config values below are the published ones of each model, the weights
are drawn with a fixed seed, and the tokenizer (for the chat template and the arithmetic prompts) is a local one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN3_VOCAB_SIZE = 151936
# Published Qwen3 dense configs (hidden sizes, depths, heads); "tiny" is ours, for tests on CPU.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "random-qwen3-0.6b": {
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    "random-qwen3-1.7b": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    "random-qwen3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "random-qwen3-tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
}


def is_random_model(name: str) -> bool:
    return name in ARCHITECTURES


def build_random_model(name: str, tokenizer_dir: str, directory: str | Path, dtype: str = "bfloat16") -> str:
    """Save a random-weight model of architecture ``name`` with the tokenizer of ``tokenizer_dir``; return its path.

    The vocabulary keeps the architecture's size (the LM head's cost); ids the tokenizer lacks are never sampled
    (see `suppressed_token_ids`). Built once per directory.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    directory = Path(directory)
    if (directory / "config.json").is_file():
        return str(directory)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab_size = QWEN3_VOCAB_SIZE if name != "random-qwen3-tiny" else max(len(tokenizer) + 64, 256)
    config = Qwen3Config(
        vocab_size=vocab_size,
        head_dim=128 if name != "random-qwen3-tiny" else 16,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **ARCHITECTURES[name],
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def suppressed_token_ids(model_dir: str) -> list[int]:
    """Ids the model's vocabulary has and its tokenizer lacks (a random model's padding of the vocabulary)."""
    from transformers import AutoConfig, AutoTokenizer

    vocab_size = AutoConfig.from_pretrained(model_dir).vocab_size
    return list(range(len(AutoTokenizer.from_pretrained(model_dir)), vocab_size))
