"""A small built-in arithmetic task with verifiable rewards, so demos and tests need no dataset download.

Every question is generated from a seed, and the answer must be given in a strict format that a reward function can
check: the last line of the reply is ``Answer: <integer>``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from datasets import Dataset, DatasetDict

# Tuned on SmolLM2-135M-Instruct: without worked examples it almost never uses the format; with two it does
# often enough (level 1: 25-28% correct greedy, 10-12% sampled at temperature 1) for RL to have signal and room.
SYSTEM_PROMPT = (
    'Always finish your reply with "Answer: <integer>" on its own line.\n'
    "\n"
    "Question: What is 2 + 3?\n"
    "Reply:\n"
    "2 + 3 = 5\n"
    "Answer: 5\n"
    "\n"
    "Question: What is 4 + 4?\n"
    "Reply:\n"
    "4 + 4 = 8\n"
    "Answer: 8"
)

# ``Answer:`` followed by the rest of its line; the last occurrence in a completion is the one that counts.
_ANSWER_TAIL = re.compile(r"Answer:([^\n]*)")
_INTEGER = re.compile(r"[ \t]*([+-]?\d+)[ \t]*")
# A line that holds nothing but ``Answer: <integer>``.
_ANSWER_LINE = re.compile(r"^[ \t]*Answer:[ \t]*[+-]?\d+[ \t]*$", re.MULTILINE)

LEVELS = (1, 2, 3)


def _questions(level: int) -> list[tuple[str, int]]:
    """Every (question, answer) pair of a level, in a fixed order."""
    if level == 1:
        return [(f"What is {a} + {b}?", a + b) for a in range(10) for b in range(10)]
    if level == 2:
        pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
        return [(f"What is {a} + {b}?", a + b) for a, b in pairs] + [(f"What is {a} - {b}?", a - b) for a, b in pairs]
    if level == 3:
        pairs = [(a, b) for a in range(2, 10) for b in range(10, 100)]
        return [(f"What is {a} * {b}?", a * b) for a, b in pairs] + [(f"What is {b} * {a}?", a * b) for a, b in pairs]
    raise ValueError(f"level must be one of {LEVELS}, got {level}")


def _rows(items: Sequence[tuple[str, int]], system_prompt: str) -> dict[str, list[Any]]:
    return {
        "prompt": [
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]
            for question, _ in items
        ],
        "answer": [str(answer) for _, answer in items],
    }


def make_arithmetic_dataset(
    num_train: int, num_test: int, seed: int = 0, level: int = 1, system_prompt: str = SYSTEM_PROMPT
) -> DatasetDict:
    """Build held-out "train"/"test" splits of arithmetic questions, deterministic for a given seed.

    Levels:

    - 1: sums of two single-digit numbers, ``a + b`` with ``0 <= a, b <= 9`` (100 distinct questions).
    - 2: sums and differences of two two-digit numbers, ``a + b`` or ``a - b`` with ``10 <= a, b <= 99``;
      differences can be negative (16,200 distinct questions).
    - 3: products of a one-digit and a two-digit number, ``a * b`` in either order with ``2 <= a <= 9`` and
      ``10 <= b <= 99`` (1,440 distinct questions).

    Questions are drawn without replacement, so no question is in both splits (and none repeats within a split).
    Each row has a conversational ``prompt`` (system message with the answer format, then the question) and the
    expected ``answer`` as a string.
    """
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be non-negative")
    pool = _questions(level)
    if num_train + num_test > len(pool):
        raise ValueError(f"level {level} has only {len(pool)} distinct questions; asked for {num_train} + {num_test}")
    random.Random(f"trl-policysplit-arithmetic:{seed}:{level}").shuffle(pool)
    train, test = pool[:num_train], pool[num_train : num_train + num_test]
    return DatasetDict(
        {
            "train": Dataset.from_dict(_rows(train, system_prompt)),
            "test": Dataset.from_dict(_rows(test, system_prompt)),
        }
    )


def completion_text(completion: Any) -> str:
    """Text of one completion, whether TRL passes a plain string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion:
        content = message.get("content", "") if isinstance(message, dict) else message
        if isinstance(content, list):  # content given as typed parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        parts.append(str(content))
    return "\n".join(parts)


def extract_answer(text: str) -> int | None:
    """Integer of the last ``Answer:`` in ``text``, or None when there is none or it is not a bare integer."""
    tails = _ANSWER_TAIL.findall(text)
    if not tails:
        return None
    match = _INTEGER.fullmatch(tails[-1])
    return int(match.group(1)) if match else None


def arithmetic_reward(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """TRL reward function: 1.0 when the last ``Answer: <integer>`` equals the expected answer, else 0.0."""
    rewards = []
    for completion, expected in zip(completions, answer, strict=True):
        predicted = extract_answer(completion_text(completion))
        rewards.append(1.0 if predicted is not None and predicted == int(expected) else 0.0)
    return rewards


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """TRL reward function: 1.0 when the completion has a line holding only ``Answer: <integer>``, else 0.0."""
    return [1.0 if _ANSWER_LINE.search(completion_text(c)) else 0.0 for c in completions]
