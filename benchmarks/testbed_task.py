"""The exploration testbed's task, tokenizer, model and warm start (`testbed.py` runs the study).

Task: "sum T<t> no <f> :" asks for five digits, none equal to ``f``, that add up to ``t``. Every prompt has many
distinct correct answers (up to a few hundred), some targets few (``t`` near 0 or 45, or a forbidden digit the
target needs), so a policy can solve a prompt in many ways or collapse onto one. The warm-start policy writes five
digits around ``t / 5`` with no regard for their sum: it solves a prompt at a low rate (pass@1 about 0.1) and spreads
its answers, so pass@k for large k is much higher. RL can raise pass@1 by making the digits add up, or by sharpening
onto the few answers it has found: the second is the mode collapse the exploration methods fight, visible as fewer
distinct correct answers and a pass@k curve that flattens.

The high-entropy instruction is the word ``vary`` before the prompt (a plain-text prompt: Policy Split's rule puts
the instruction and a blank line first). The warm-start data teach it weakly: after ``vary`` the digits spread a
little more, so the two modes start close, as an instruction-following LLM reacts to the paper's prompt.

Everything is built locally and deterministically from the seed (no download); the warm-start model is cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NUM_DIGITS = 5
MAX_TARGET = 9 * NUM_DIGITS
INSTRUCTION = "vary"
SPECIAL = ["<pad>", "<eos>"]
WORDS = ["sum", "no", ":", INSTRUCTION, *[str(d) for d in range(10)], *[f"T{t}" for t in range(MAX_TARGET + 1)]]

# Warm-start data (ours, fixed before any run): digits iid around t / 5, the high-entropy mode a little wider.
WARM_SPREAD = 1.6
WARM_SPREAD_HIGH_ENTROPY = 1.8
WARM_EXAMPLES = 40_000
WARM_STEPS = 1200
WARM_BATCH = 256
WARM_LR = 3e-3
MODEL_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
}
CACHE_VERSION = 1


def prompt_text(target: int, forbidden: int) -> str:
    return f"sum T{target} no {forbidden} :"


def count_solutions(target: int, forbidden: int) -> int:
    """Five-digit answers without ``forbidden`` that add up to ``target`` (dynamic programming over digits)."""
    ways = [1] + [0] * MAX_TARGET
    for _ in range(NUM_DIGITS):
        ways = [sum(ways[s - d] for d in range(10) if d != forbidden and s - d >= 0) for s in range(MAX_TARGET + 1)]
    return ways[target]


def all_prompts() -> list[tuple[int, int]]:
    """Every solvable (target, forbidden digit) pair, in a fixed order."""
    return [(t, f) for t in range(MAX_TARGET + 1) for f in range(10) if count_solutions(t, f) > 0]


def splits(split_seed: int = 0) -> dict[str, list[tuple[int, int]]]:
    """Train / validation / test prompts: a fixed shuffle (the same for every run of the study), 40/10/50 %."""
    prompts = all_prompts()
    random.Random(split_seed).shuffle(prompts)
    n_train, n_val = int(0.4 * len(prompts)), int(0.1 * len(prompts))
    return {
        "train": prompts[:n_train],
        "validation": prompts[n_train : n_train + n_val],
        "test": prompts[n_train + n_val :],
    }


def parse_answer(text: str) -> list[int] | None:
    tokens = text.split()
    if len(tokens) != NUM_DIGITS or not all(token.isdigit() and len(token) == 1 for token in tokens):
        return None
    return [int(token) for token in tokens]


def is_correct(text: str, target: int, forbidden: int) -> bool:
    digits = parse_answer(text)
    return digits is not None and forbidden not in digits and sum(digits) == target


def sum_reward(completions: Sequence[str], target: Sequence[int], forbidden: Sequence[int], **kwargs) -> list[float]:
    """1 for five digits without the forbidden one that add up to the target, else 0 (a TRL reward function)."""
    return [float(is_correct(c, t, f)) for c, t, f in zip(completions, target, forbidden, strict=True)]


def train_dataset(prompts: Sequence[tuple[int, int]]):
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [prompt_text(t, f) for t, f in prompts],
            "target": [t for t, _ in prompts],
            "forbidden": [f for _, f in prompts],
        }
    )


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer, model, warm start


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*SPECIAL, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")


def load_tokenizer(directory: str | os.PathLike):
    """The saved tokenizer as built: `AutoTokenizer` would pick the model type's class (Qwen2's byte-level BPE)
    and replace the word-level pre-tokenizer, so the trainers get this one as `processing_class`."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(directory)


def _warm_digits(rng: random.Random, target: int, forbidden: int, spread: float) -> list[int]:
    """Five digits drawn independently around target / 5, never the forbidden one: the warm-start policy."""
    centre = target / NUM_DIGITS
    weights = [0.0 if d == forbidden else math.exp(-0.5 * ((d - centre) / spread) ** 2) for d in range(10)]
    return rng.choices(range(10), weights=weights, k=NUM_DIGITS)


def warm_start_examples(seed: int, prompts: Sequence[tuple[int, int]], count: int = WARM_EXAMPLES) -> list[str]:
    """Prompt + answer texts; half the prompts carry the instruction and a slightly wider spread."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        target, forbidden = rng.choice(prompts)
        high = rng.random() < 0.5
        digits = _warm_digits(rng, target, forbidden, WARM_SPREAD_HIGH_ENTROPY if high else WARM_SPREAD)
        prefix = f"{INSTRUCTION}\n\n" if high else ""
        examples.append(f"{prefix}{prompt_text(target, forbidden)} {' '.join(map(str, digits))}")
    return examples


def default_cache_dir() -> Path:
    root = os.environ.get("TRL_POLICYSPLIT_CACHE") or Path.home() / ".cache" / "trl_policysplit"
    return Path(root) / "testbed"


def _cache_key(seed: int) -> str:
    settings = {
        "version": CACHE_VERSION,
        "seed": seed,
        "model": MODEL_CONFIG,
        "warm": [WARM_SPREAD, WARM_SPREAD_HIGH_ENTROPY, WARM_EXAMPLES, WARM_STEPS, WARM_BATCH, WARM_LR],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def warm_start_model(seed: int, cache_dir: str | os.PathLike | None = None) -> str:
    """Directory of the seed's warm-start model and tokenizer, built once (a supervised fit on the warm-start data
    over every prompt's *target range*, never on test answers: the data are the base policy's own samples)."""
    directory = Path(cache_dir or default_cache_dir()) / f"seed{seed}-{_cache_key(seed)}"
    if (directory / "done.json").is_file():
        return str(directory)
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **MODEL_CONFIG,
    )
    model = Qwen2ForCausalLM(config)
    texts = warm_start_examples(seed, all_prompts())
    encoded = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
    width = max(map(len, encoded))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in encoded])
    attention = (torch.arange(width).unsqueeze(0) < torch.tensor([len(r) for r in encoded]).unsqueeze(1)).long()
    # Train on the answer and its end only: the prompt is given.
    labels = ids.masked_fill(attention == 0, -100)
    answer_start = torch.tensor([len(r) - NUM_DIGITS - 1 for r in encoded]).unsqueeze(1)
    labels = labels.masked_fill(torch.arange(width).unsqueeze(0) < answer_start, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=WARM_LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(WARM_STEPS):
        rows = torch.randint(0, ids.size(0), (WARM_BATCH,), generator=generator)
        loss = model(input_ids=ids[rows], attention_mask=attention[rows], labels=labels[rows]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        for group in optimizer.param_groups:  # linear decay to 10 %
            group["lr"] = WARM_LR * (1 - 0.9 * (step + 1) / WARM_STEPS)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "done.json").write_text(json.dumps({"seed": seed, "final_loss": loss.item()}) + "\n")
    try:
        tmp.rename(directory)
    except OSError:  # another process finished first: keep its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(directory)


# ----------------------------------------------------------------------------------------------------------------
# Held-out sampling: fast, batched, with per-token entropies and both modes' log-probs


def sample(model: Any, tokenizer: Any, prompts: Sequence[str], num_samples: int, seed: int, batch_rows: int = 4096):
    """``num_samples`` completions of each prompt (temperature 1): token ids ``(P, S, L)``, lengths ``(P, S)``, texts,
    per-token entropies and log-probs ``(P, S, L)`` (0 past the end)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    rows = [(i, ids) for i, ids in enumerate(encoded) for _ in range(num_samples)]
    steps = NUM_DIGITS + 1
    all_ids = torch.zeros(len(rows), steps, dtype=torch.long)
    all_entropy = torch.zeros(len(rows), steps)
    all_logp = torch.zeros(len(rows), steps)
    all_len = torch.zeros(len(rows), dtype=torch.long)
    eos = tokenizer.eos_token_id
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start : start + batch_rows]
            width = max(len(ids) for _, ids in chunk)
            pad = tokenizer.pad_token_id
            prompt = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in chunk])
            mask = (prompt != pad).long()
            position = (mask.cumsum(1) - 1).clamp(min=0)
            done = torch.zeros(len(chunk), dtype=torch.bool)
            lengths = torch.zeros(len(chunk), dtype=torch.long)
            ids, past = prompt, None
            for t in range(steps):
                out = model(
                    input_ids=ids, attention_mask=mask, position_ids=position, past_key_values=past, use_cache=True
                )
                past = out.past_key_values
                logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
                token = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
                entropy = -(logp.exp() * logp).sum(-1)
                live = ~done
                index = slice(start, start + len(chunk))
                all_ids[index, t] = torch.where(live, token, torch.full_like(token, pad))
                all_entropy[index, t] = entropy * live
                all_logp[index, t] = logp.gather(1, token.unsqueeze(1)).squeeze(1) * live
                lengths += live.long()
                done |= token == eos
                ids = token.unsqueeze(1)
                mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
                position = position[:, -1:] + 1
            all_len[start : start + len(chunk)] = lengths
    texts = tokenizer.batch_decode(
        [row[:n].tolist() for row, n in zip(all_ids, all_len, strict=True)], skip_special_tokens=True
    )
    shape = (len(prompts), num_samples)
    return {
        "ids": all_ids.reshape(*shape, steps),
        "lengths": all_len.reshape(shape),
        "texts": [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))],
        "entropy": all_entropy.reshape(*shape, steps),
        "logp": all_logp.reshape(*shape, steps),
    }


def sequence_logps(model: Any, tokenizer: Any, prompts: Sequence[str], ids, lengths, batch_rows: int = 4096):
    """Log-probs ``(P, S, L)`` of given completions (``ids``, ``lengths`` from `sample`) behind other prompts: the
    cross-mode scores for the inter-mode KL."""
    import torch

    num_prompts, num_samples, steps = ids.shape
    flat_ids = ids.reshape(-1, steps)
    flat_len = lengths.reshape(-1)
    encoded = [tokenizer(p)["input_ids"] for p in prompts for _ in range(num_samples)]
    out = torch.zeros(flat_ids.shape)
    pad = tokenizer.pad_token_id
    model.eval()
    with torch.no_grad():
        for start in range(0, len(encoded), batch_rows):
            chunk = encoded[start : start + batch_rows]
            width = max(map(len, chunk))
            prompt = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
            completion = flat_ids[start : start + len(chunk)]
            full = torch.cat([prompt, completion], dim=1)
            valid = torch.arange(steps).unsqueeze(0) < flat_len[start : start + len(chunk)].unsqueeze(1)
            mask = torch.cat([(prompt != pad).long(), valid.long()], dim=1)
            position = (mask.cumsum(1) - 1).clamp(min=0)
            logits = model(input_ids=full, attention_mask=mask, position_ids=position).logits[:, width - 1 : -1]
            logp = torch.log_softmax(logits.float(), dim=-1).gather(2, completion.unsqueeze(2)).squeeze(2)
            out[start : start + len(chunk)] = logp * valid
    return out.reshape(num_prompts, num_samples, steps)
