import copy

import pytest
from transformers import AutoTokenizer

from trl_policysplit.modes import DEFAULT_HIGH_ENTROPY_PROMPT, template_default_system_prompt, to_high_entropy

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


# ---------------------------------------------------------------------------------------------------------------
# Templates that inject a default system prompt: the modes must differ by the instruction only

DEFAULT_TEXT = "You are a helpful AI assistant named Tiny, trained offline"
_TURNS = (
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEMPLATES = {
    # SmolLM2's pattern: a default system turn when the conversation has none.
    "injects_default": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_TEXT + "<|im_end|>\n{% endif %}" + _TURNS,
    # The tiny model's own template: nothing injected.
    "plain": "{% for message in messages %}" + _TURNS,
    # Llama 3's pattern: a system header is always rendered, with empty content when none is given.
    "empty_header": "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n<|im_end|>\n{% endif %}"
    "{% for message in messages %}" + _TURNS,
}


@pytest.fixture(scope="module")
def tokenizer_for(tiny_model_dir):
    def make(template: str):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        tokenizer.chat_template = template
        return tokenizer

    return make


def _render(tokenizer, prompt) -> str:
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize(
    ("name", "expected"), [("injects_default", DEFAULT_TEXT), ("plain", None), ("empty_header", None)]
)
def test_the_default_system_prompt_is_read_from_the_template(tokenizer_for, name, expected):
    assert template_default_system_prompt(tokenizer_for(TEMPLATES[name])) == expected


def test_a_template_that_rejects_system_messages_or_no_template_has_no_default(tokenizer_for):
    rejecting = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}" + (
        "{% for message in messages %}" + _TURNS
    )
    assert template_default_system_prompt(tokenizer_for(rejecting)) is None
    tokenizer = tokenizer_for(None)
    assert template_default_system_prompt(tokenizer) is None


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize(
    "prompt",
    [
        [{"role": "user", "content": "What is 2 + 2?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}],
    ],
    ids=["no_system", "system"],
)
def test_rendered_high_entropy_prompt_is_the_normal_one_plus_the_instruction(tokenizer_for, name, prompt):
    tokenizer = tokenizer_for(TEMPLATES[name])
    default = template_default_system_prompt(tokenizer)
    normal = _render(tokenizer, prompt)
    high = _render(tokenizer, to_high_entropy(prompt, INSTRUCTION, default))
    assert high.count(INSTRUCTION) == 1
    if prompt[0]["role"] == "system" or default is not None or name == "empty_header":
        # The instruction goes into the system text the normal prompt already renders: nothing else changes.
        assert high.replace(INSTRUCTION + "\n\n", "", 1).replace(INSTRUCTION, "", 1) == normal
    else:
        # No system text to keep: a new system turn comes first and the normal prompt follows unchanged.
        assert high.endswith(normal) and high.startswith("<|im_start|>system\n" + INSTRUCTION)
    if name == "injects_default":
        assert (DEFAULT_TEXT in high) == (prompt[0]["role"] != "system")


def test_without_the_default_the_injected_text_is_lost(tokenizer_for):
    """The defect this guards against: a bare new system message replaces the template's default text."""
    tokenizer = tokenizer_for(TEMPLATES["injects_default"])
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    assert DEFAULT_TEXT not in _render(tokenizer, to_high_entropy(prompt, INSTRUCTION))
    assert to_high_entropy(prompt, INSTRUCTION, DEFAULT_TEXT)[0] == {
        "role": "system",
        "content": f"{INSTRUCTION}\n\n{DEFAULT_TEXT}",
    }


def test_plain_text_prompts_ignore_the_default_system_prompt():
    assert to_high_entropy("What is 2 + 2?", INSTRUCTION, DEFAULT_TEXT) == f"{INSTRUCTION}\n\nWhat is 2 + 2?"
