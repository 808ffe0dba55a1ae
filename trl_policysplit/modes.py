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


def to_high_entropy(prompt: str | list[dict[str, Any]], instruction: str) -> str | list[dict[str, Any]]:
    """Return the high-entropy version of a prompt, leaving the input untouched.

    A conversation whose first message is a system message gets the instruction prepended to that message,
    separated by a blank line; any other conversation gets a new system message first. A plain-text prompt
    gets the instruction and a blank line prepended.
    """
    if isinstance(prompt, str):
        return f"{instruction}\n\n{prompt}"
    if prompt and prompt[0].get("role") == "system":
        first = {**prompt[0], "content": _prefix_content(prompt[0]["content"], instruction)}
        return [first, *prompt[1:]]
    return [{"role": "system", "content": instruction}, *prompt]
