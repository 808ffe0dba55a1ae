"""Tests of the built-in arithmetic task: reward parsing on hand-written completions and dataset properties."""

from __future__ import annotations

import re

import pytest

from trl_policysplit.tools.arithmetic import (
    SYSTEM_PROMPT,
    arithmetic_reward,
    extract_answer,
    format_reward,
    make_arithmetic_dataset,
)


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------- rewards


def test_correct_answer() -> None:
    completions = [chat("3 plus 4 is 7.\nAnswer: 7")]
    assert arithmetic_reward(completions, answer=["7"]) == [1.0]
    assert format_reward(completions) == [1.0]


def test_wrong_answer_is_well_formatted_but_wrong() -> None:
    completions = [chat("Answer: 8")]
    assert arithmetic_reward(completions, answer=["7"]) == [0.0]
    assert format_reward(completions) == [1.0]


@pytest.mark.parametrize(
    "text",
    [
        "7",
        "The answer is 7.",
        "answer: 7",  # the keyword is case-sensitive
        "Answer: seven",
        "Answer: 7.5",
        "Answer: 7 apples",
        "Answer:",
        "",
    ],
)
def test_missing_or_malformed_format(text: str) -> None:
    assert arithmetic_reward([chat(text)], answer=["7"]) == [0.0]
    assert format_reward([chat(text)]) == [0.0]


def test_last_answer_line_counts() -> None:
    assert arithmetic_reward([chat("Answer: 7\nWait, no.\nAnswer: 8")], answer=["8"]) == [1.0]
    assert arithmetic_reward([chat("Answer: 8\nHmm, let me redo it.\nAnswer: 7")], answer=["8"]) == [0.0]
    # A malformed last answer is not rescued by an earlier correct one.
    assert arithmetic_reward([chat("Answer: 8\nAnswer: eight")], answer=["8"]) == [0.0]


def test_inline_answer_counts_for_accuracy_but_not_format() -> None:
    completions = [chat("So the result is 12. Answer: 12")]
    assert arithmetic_reward(completions, answer=["12"]) == [1.0]
    assert format_reward(completions) == [0.0]


def test_negative_numbers() -> None:
    completions = [chat("23 - 41 = -18\nAnswer: -18"), chat("Answer: 18"), chat("Answer: -18")]
    assert arithmetic_reward(completions, answer=["-18", "-18", "18"]) == [1.0, 0.0, 0.0]
    assert format_reward(completions) == [1.0, 1.0, 1.0]


def test_whitespace_and_leading_zeros() -> None:
    completions = [chat("  Answer:   42  "), chat("Answer:042"), chat("Answer: +42")]
    assert arithmetic_reward(completions, answer=["42"] * 3) == [1.0, 1.0, 1.0]
    assert format_reward(completions) == [1.0, 1.0, 1.0]


def test_digits_are_not_truncated() -> None:
    assert arithmetic_reward([chat("Answer: 75")], answer=["7"]) == [0.0]
    assert extract_answer("Answer: 75") == 75


def test_plain_string_completions() -> None:
    completions = ["Answer: 5", "5", "Answer: 6\nAnswer: 5"]
    assert arithmetic_reward(completions, answer=["5", "5", "5"]) == [1.0, 0.0, 1.0]
    assert format_reward(completions) == [1.0, 0.0, 1.0]


def test_batch_and_extra_kwargs() -> None:
    completions = [chat("Answer: 1"), chat("Answer: 2"), chat("nothing")]
    rewards = arithmetic_reward(completions, answer=["1", "3", "0"], prompts=[None] * 3, completion_ids=[[]] * 3)
    assert rewards == [1.0, 0.0, 0.0]
    assert all(isinstance(r, float) for r in rewards)
    assert format_reward(completions, answer=["1", "3", "0"]) == [1.0, 1.0, 0.0]


def test_extract_answer() -> None:
    assert extract_answer("no answer here") is None
    assert extract_answer("Answer: -3") == -3
    assert extract_answer("Answer: 1\nAnswer: 2") == 2


# ---------------------------------------------------------------- dataset

_QUESTION = re.compile(r"What is (\d+) ([-+*]) (\d+)\?")


def _evaluate(question: str) -> int:
    match = _QUESTION.fullmatch(question)
    assert match is not None, question
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _questions(split) -> list[str]:
    return [prompt[-1]["content"] for prompt in split["prompt"]]


def test_dataset_shape_and_prompt_format() -> None:
    ds = make_arithmetic_dataset(20, 10, seed=0)
    assert set(ds) == {"train", "test"}
    assert len(ds["train"]) == 20 and len(ds["test"]) == 10
    assert set(ds["train"].column_names) == {"prompt", "answer"}
    prompt = ds["train"][0]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[0]["content"] == SYSTEM_PROMPT
    assert "Answer: <integer>" in SYSTEM_PROMPT
    assert isinstance(ds["train"][0]["answer"], str)


def test_dataset_is_deterministic() -> None:
    first = make_arithmetic_dataset(30, 10, seed=3, level=2)
    second = make_arithmetic_dataset(30, 10, seed=3, level=2)
    for split in ("train", "test"):
        assert first[split].to_list() == second[split].to_list()


def test_different_seeds_differ() -> None:
    a = make_arithmetic_dataset(30, 10, seed=0, level=2)
    b = make_arithmetic_dataset(30, 10, seed=1, level=2)
    assert _questions(a["train"]) != _questions(b["train"])


@pytest.mark.parametrize("level", [1, 2, 3])
def test_train_test_disjoint_and_no_repeats(level: int) -> None:
    num_train, num_test = (60, 40) if level == 1 else (200, 64)
    ds = make_arithmetic_dataset(num_train, num_test, seed=7, level=level)
    train, test = _questions(ds["train"]), _questions(ds["test"])
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_answers_are_correct(level: int) -> None:
    ds = make_arithmetic_dataset(100 if level > 1 else 80, 20, seed=11, level=level)
    for split in ("train", "test"):
        for question, answer in zip(_questions(ds[split]), ds[split]["answer"], strict=True):
            assert int(answer) == _evaluate(question)
            assert answer == str(int(answer))


def test_level_operand_ranges() -> None:
    ops = {1: set(), 2: set(), 3: set()}
    for level in (1, 2, 3):
        for question in _questions(make_arithmetic_dataset(80, 20, seed=0, level=level)["train"]):
            match = _QUESTION.fullmatch(question)
            assert match is not None
            a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
            ops[level].add(op)
            if level == 1:
                assert 0 <= a <= 9 and 0 <= b <= 9
            elif level == 2:
                assert 10 <= a <= 99 and 10 <= b <= 99
            else:
                assert sorted((len(str(a)), len(str(b)))) == [1, 2]
    assert ops == {1: {"+"}, 2: {"+", "-"}, 3: {"*"}}


def test_gold_answers_score_one() -> None:
    ds = make_arithmetic_dataset(50, 0, seed=5, level=2)["train"]
    completions = [chat(f"Answer: {a}") for a in ds["answer"]]
    assert arithmetic_reward(completions, ds["answer"]) == [1.0] * len(ds)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        make_arithmetic_dataset(90, 20, level=1)  # level 1 has only 100 questions
    with pytest.raises(ValueError):
        make_arithmetic_dataset(10, 10, level=4)
    with pytest.raises(ValueError):
        make_arithmetic_dataset(-1, 10)
