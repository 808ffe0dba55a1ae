"""Why DiPO cannot act: the pure checks behind the trainer's one-time warnings."""

from __future__ import annotations

import math

import torch

from trl_policysplit.diagnostics import (
    NO_VALID_SPLIT,
    NON_BINARY,
    dipo_warnings,
    no_split_reason,
    non_binary_reward_functions,
)

NAN = math.nan
NAMES = ("accuracy", "format", "length")


def test_binary_functions_pass_even_when_their_weighted_sum_takes_four_values():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [NAN, 1.0]])
    assert non_binary_reward_functions(rewards, torch.tensor([1.0, 0.25]), NAMES[:2]) == {}


def test_a_function_with_more_than_two_values_is_named_unless_its_weight_is_zero():
    rewards = torch.tensor([[1.0, -3.0], [0.0, -18.0], [1.0, -7.0], [1.0, NAN]])
    assert non_binary_reward_functions(rewards, torch.tensor([1.0, 1.0]), ("accuracy", "length")) == {"length": 3}
    assert non_binary_reward_functions(rewards, torch.tensor([1.0, 0.0]), ("accuracy", "length")) == {}


def test_the_reason_for_no_split_follows_the_rewards_and_the_threshold():
    assert no_split_reason(torch.tensor([-18.0, -3.0, NAN]), 0.5) == (
        "no completion's total reward is above correct_reward_threshold=0.5 (total rewards of the latest batch from "
        "-18 to -3)"
    )
    assert no_split_reason(torch.tensor([1.0, 2.5]), 0.5).startswith("every completion's total reward is above")
    assert no_split_reason(torch.tensor([0.0, 1.0]), 0.5).startswith("perplexity does not separate")
    assert no_split_reason(torch.tensor([NAN, NAN]), 0.5) == "no completion of the latest batch was scored"


def test_dipo_warnings_name_each_reason_when_it_applies():
    length_penalty = torch.tensor([[-3.0], [-18.0], [-7.0], [-12.0]])  # TRL's docs example: -abs(20 - len(c))
    weights = torch.tensor([1.0])
    early = dipo_warnings(length_penalty, weights, ["length"], 0.5, batches_without_split=1, warn_after_batches=3)
    assert list(early) == [NON_BINARY]
    assert early[NON_BINARY].startswith("DiPO: rewards are not binary: length (4 distinct values in one batch).")
    assert "correct_reward_threshold=0.5" in early[NON_BINARY]
    late = dipo_warnings(length_penalty, weights, ["length"], 0.5, batches_without_split=3, warn_after_batches=3)
    assert list(late) == [NON_BINARY, NO_VALID_SPLIT]
    assert late[NO_VALID_SPLIT].startswith("DiPO: no valid perplexity threshold for 3 generation batches in a row")
    assert "no completion's total reward is above correct_reward_threshold=0.5 (total rewards of the latest batch " \
        "from -18 to -3)" in late[NO_VALID_SPLIT]  # fmt: skip
    binary = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    weighted = torch.tensor([1.0, 0.25])
    assert dipo_warnings(binary, weighted, NAMES[:2], 0.5, batches_without_split=2, warn_after_batches=3) == {}
    mixed = dipo_warnings(binary, weighted, NAMES[:2], 0.5, batches_without_split=3, warn_after_batches=3)
    assert list(mixed) == [NO_VALID_SPLIT] and "perplexity does not separate" in mixed[NO_VALID_SPLIT]
