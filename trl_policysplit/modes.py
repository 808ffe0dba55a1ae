"""The two modes of Policy Split: the prompt as given (normal) and with a high-entropy instruction."""

from __future__ import annotations

from typing import Any

NORMAL = "normal"
HIGH_ENTROPY = "high_entropy"
MODES = (NORMAL, HIGH_ENTROPY)

# Our own wording (ALGORITHMS.md §1 leaves it to the project): ask for exploration, keep answers exact. Kept short on
# purpose: every completion is also trained behind the high-entropy prompt, so each instruction token is paid for
# in every cross-scored row of every step (about 20 tokens with SmolLM2's tokenizer).
DEFAULT_HIGH_ENTROPY_PROMPT = (
    "Explore unusual, varied lines of reasoning, but keep the final answer exact and in the requested format."
)


def _prefix_content(content: Any, instruction: str) -> Any:
    """Put the instruction before a message's content, for string and content-block messages."""
    if isinstance(content, list):
        return [{"type": "text", "text": instruction + "\n\n"}, *content]
    return f"{instruction}\n\n{content}"


def to_high_entropy(
    prompt: str | list[dict[str, Any]], instruction: str, default_system_prompt: str | None = None
) -> str | list[dict[str, Any]]:
    """Return the high-entropy version of a prompt, leaving the input untouched.

    A conversation whose first message is a system message gets the instruction prepended to that message,
    separated by a blank line; any other conversation gets a new system message first. When the chat template
    renders a default system prompt for conversations without one (``default_system_prompt``, see
    `template_default_system_prompt`), that new message holds the instruction, a blank line and the default text, so
    the two modes differ by the instruction only. A plain-text prompt gets the instruction and a blank line prepended.
    """
    if isinstance(prompt, str):
        return f"{instruction}\n\n{prompt}"
    if prompt and prompt[0].get("role") == "system":
        first = {**prompt[0], "content": _prefix_content(prompt[0]["content"], instruction)}
        return [first, *prompt[1:]]
    content = instruction if not default_system_prompt else _prefix_content(default_system_prompt, instruction)
    return [{"role": "system", "content": content}, *prompt]


_PROBE_SYSTEM = "\u2063policy-split-probe\u2063"  # text no template adds by itself
_PROBE_CONVERSATION = [{"role": "user", "content": "\u2063policy-split-question\u2063"}]


def template_default_system_prompt(processing_class: Any, **template_kwargs: Any) -> str | None:
    """The system text a chat template renders for a conversation that has no system message, or None.

    Templates such as SmolLM2's and Qwen2.5's inject their own default system prompt; a new system message replaces
    it. Found from the template itself: the conversation rendered with a probe system message must equal the
    conversation rendered without one once the probe is replaced by the default text. ``template_kwargs`` go to
    ``apply_chat_template`` (e.g. ``chat_template``, ``tools``, TRL's ``chat_template_kwargs``).
    """

    def render(conversation: list[dict[str, Any]]) -> str:
        return processing_class.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True, **template_kwargs
        )

    try:
        without_system = render(_PROBE_CONVERSATION)
        with_probe = render([{"role": "system", "content": _PROBE_SYSTEM}, *_PROBE_CONVERSATION])
    except Exception:  # no chat template, or one that rejects system messages: nothing is injected that we can see
        return None
    if with_probe.count(_PROBE_SYSTEM) != 1:
        return None
    before, after = with_probe.split(_PROBE_SYSTEM)
    if len(without_system) <= len(before) + len(after):
        return None
    if not (without_system.startswith(before) and without_system.endswith(after)):
        return None
    default = without_system[len(before) : len(without_system) - len(after)]
    return default if default.strip() else None
