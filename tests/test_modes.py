import copy

from trl_policysplit.modes import DEFAULT_HIGH_ENTROPY_PROMPT, to_high_entropy

INSTRUCTION = "Think differently."


def test_plain_text_prompt_gets_the_instruction_and_a_blank_line_first():
    assert to_high_entropy("What is 2 + 2?", INSTRUCTION) == "Think differently.\n\nWhat is 2 + 2?"


def test_conversation_without_system_message_gets_a_new_first_system_message():
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    assert to_high_entropy(prompt, INSTRUCTION) == [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": "What is 2 + 2?"},
    ]


def test_existing_system_message_gets_the_instruction_prepended_with_a_blank_line():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert to_high_entropy(prompt, INSTRUCTION) == [
        {"role": "system", "content": "Think differently.\n\nBe brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_content_block_system_message_gets_a_text_block_first():
    prompt = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}]
    assert to_high_entropy(prompt, INSTRUCTION)[0]["content"] == [
        {"type": "text", "text": "Think differently.\n\n"},
        {"type": "text", "text": "Be brief."},
    ]


def test_input_is_not_mutated():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    before = copy.deepcopy(prompt)
    to_high_entropy(prompt, INSTRUCTION)
    assert prompt == before


def test_default_instruction_asks_for_exploration_and_exact_answers():
    assert "exact" in DEFAULT_HIGH_ENTROPY_PROMPT and len(DEFAULT_HIGH_ENTROPY_PROMPT) > 40


def test_default_instruction_stays_short_because_every_cross_pair_pays_for_it():
    # Each instruction token is trained in every high-entropy-context row of every step (docs/BENCHMARKS.md):
    # the 57-token wording of the first release cost about 20 % more loss tokens on the arithmetic task.
    assert len(DEFAULT_HIGH_ENTROPY_PROMPT.split()) <= 20
