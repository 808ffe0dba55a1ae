"""Model cards that say what was trained: the methods a run used, their papers and settings, and how to sample
Policy Split's high-entropy mode later. TRL writes the card (`create_model_card`); the trainers add these parts."""

from __future__ import annotations

import os
from typing import Any

from trl import GRPOTrainer

# The paper of each method a model card can name, by arXiv id (docs/ALGORITHMS.md); titles and authors as on arXiv
# (only the first author of 2505.22617, whose author order we could not confirm).
_POLICY_SPLIT = {
    "name": "Policy Split",
    "key": "yao2026policysplit",
    "id": "2604.11510",
    "year": "2026",
    "title": "Policy Split: Incentivizing Dual-Mode Exploration in LLM Reinforcement with Dual-Mode Entropy "
    "Regularization",
    "authors": "Jiashu Yao and Heyan Huang and Chuwei Luo and Daiqing Wu and Zeming Liu and Yuhang Guo and "
    "Yangyang Kang",
}
_ASYM_GRPO = {
    "name": "AsymGRPO",
    "key": "gu2026asymgrpo",
    "id": "2604.04894",
    "year": "2026",
    "title": "Asymmetric Advantage Modulation Calibrates Entropy Dynamics in RLVR",
    "authors": "Hengrui Gu and Xiaotian Han and Yujing Bian and Feiyi Wang and Kaixiong Zhou",
}
_DIPO = {
    "name": "DiPO",
    "key": "li2026dipo",
    "id": "2604.13902",
    "year": "2026",
    "title": "DiPO: Disentangled Perplexity Policy Optimization for Fine-grained Exploration-Exploitation Trade-Off",
    "authors": "Xiaofan Li and Ming Yang and Zhiyuan Ma and Shichao Ma and Jintao Du and Yu Cheng and "
    "Weiqiang Wang and Zhizhong Zhang and Xin Tan and Yanyun Qu and Lizhuang Ma and Yuan Xie",
}
_ENTROPY_MECHANISM = {
    "key": "cui2025entropy",
    "id": "2505.22617",
    "year": "2025",
    "title": "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
    "authors": "Ganqu Cui and others",
}
_ENTROPY_ADVANTAGE = {
    "name": "entropy-based advantage",
    "key": "cheng2025reasoning",
    "id": "2506.14758",
    "year": "2025",
    "title": "Reasoning with Exploration: An Entropy Perspective on Reinforcement Learning for LLMs",
    "authors": "Daixuan Cheng and Shaohan Huang and Xuekai Zhu and Bo Dai and Wayne Xin Zhao and Zhenliang Zhang "
    "and Furu Wei",
}


def _with_citation(paper: dict[str, str], **extra: str) -> dict[str, str]:
    """The paper with its BibTeX entry, in the layout of TRL's own citations."""
    citation = (
        f"@article{{{paper['key']},\n"
        f"    title        = {{{{{paper['title']}}}}},\n"
        f"    author       = {{{paper['authors']}}},\n"
        f"    year         = {paper['year']},\n"
        f"    eprint       = {{arXiv:{paper['id']}}},\n"
        "}"
    )
    return {**paper, **extra, "citation": citation}


CARD_PAPERS: dict[str, dict[str, str]] = {
    "policy_split": _with_citation(_POLICY_SPLIT, tag="policy-split"),
    "asym_grpo": _with_citation(_ASYM_GRPO, tag="asym-grpo"),
    "dipo": _with_citation(_DIPO, tag="dipo"),
    "clip_cov": _with_citation(_ENTROPY_MECHANISM, name="Clip-Cov", tag="clip-cov"),
    "kl_cov": _with_citation(_ENTROPY_MECHANISM, name="KL-Cov", tag="kl-cov"),
    "entropy_advantage": _with_citation(_ENTROPY_ADVANTAGE, tag="entropy-advantage"),
}


def methods_section(trainer_name: str, args: Any, methods: list[tuple[str, list[str]]]) -> str:
    """The model card's "Training methods" section: each method's paper and the settings it ran with."""
    lines = [
        "## Training methods",
        "",
        f"Trained with `{trainer_name}` from `trl_policysplit`, a subclass of TRL's `GRPOTrainer`:",
        "",
    ]
    for key, fields in methods:
        paper = CARD_PAPERS[key]
        settings = ", ".join(f"`{name}={getattr(args, name)!r}`" for name in fields)
        lines.append(
            f"- **{paper['name']}**, [{paper['title']}](https://huggingface.co/papers/{paper['id']}) "
            f"(arXiv {paper['id']}): {settings}"
        )
    grpo = GRPOTrainer._paper
    lines.append(
        f"- **GRPO**, the base algorithm, [{grpo['title']}](https://huggingface.co/papers/{grpo['id']}) "
        f"(arXiv {grpo['id']}): `loss_type={args.loss_type!r}`, `beta={args.beta!r}`"
    )
    return "\n".join(lines)


def used_methods(args: Any, policy_split: bool = False) -> list[tuple[str, list[str]]]:
    """The methods a run uses on top of GRPO: ``(key of CARD_PAPERS, config fields that set it up)``."""
    methods = []
    if policy_split:
        fields = ["completions_per_mode", "share_rollouts", "alpha", "eta_high", "eta_normal", "kappa"]
        guards = ["cross_importance_sampling", "cross_importance_cap", "eta_high_target_kl", "mode_kl_coef"]
        methods.append(("policy_split", [*fields, "bonus_normalization", "entropy_estimator", *guards]))
    if args.asymmetric_advantages:
        methods.append(("asym_grpo", ["asymmetric_advantages", "beta_pos", "beta_neg", "reward_range"]))
    if args.perplexity_reallocation:
        fields = ["perplexity_reallocation", "ppl_alpha", "ppl_queue_batches", "correct_reward_threshold"]
        methods.append(("dipo", fields))
    if args.policy_loss == "clip_cov":
        fields = ["policy_loss", "clip_cov_ratio", "clip_cov_lb", "clip_cov_ub", "epsilon", "epsilon_high"]
        methods.append(("clip_cov", fields))
    elif args.policy_loss == "kl_cov":
        methods.append(("kl_cov", ["policy_loss", "kl_cov_ratio", "kl_cov_coef", "kl_cov_keep_ppo_clip"]))
    if args.entropy_advantage_alpha > 0:
        methods.append(("entropy_advantage", ["entropy_advantage_alpha", "entropy_advantage_kappa"]))
    return methods


def card_identity(methods: list[tuple[str, list[str]]], tag_names: list[str]) -> dict[str, Any]:
    """The ``_name``, ``_paper`` and ``_tag_names`` TRL's card reads, for these methods (GRPO's citation kept)."""
    papers = list({CARD_PAPERS[key]["id"]: CARD_PAPERS[key] for key, _ in methods}.values())
    only = papers[0] if len(papers) == 1 else {}  # TRL's template links a single paper
    return {
        "_name": " + ".join(dict.fromkeys(CARD_PAPERS[key]["name"] for key, _ in methods)),
        "_paper": {
            "title": only.get("title"),
            "id": only.get("id"),
            "citation": "\n\n".join([*(paper["citation"] for paper in papers), GRPOTrainer._paper["citation"]]),
        },
        "_tag_names": list(dict.fromkeys([*tag_names, *(CARD_PAPERS[key]["tag"] for key, _ in methods)])),
    }


def high_entropy_section(instruction: str, default: str | None) -> str:
    """How to sample the high-entropy mode later: the instruction, word for word, and where it goes."""
    fence = "```"
    while fence in instruction or (default and fence in default):
        fence += "`"
    if default:
        template = (
            "This model's chat template adds a default system prompt to conversations without a system "
            f"message, so there the new system message is the instruction, a blank line and this text:\n\n"
            f"{fence}text\n{default}\n{fence}"
        )
        system = f'instruction + "\\n\\n" + {default!r}'
    else:
        template = "This model's chat template adds no default system prompt."
        system = "instruction"
    lines = [
        "## Sampling the high-entropy mode",
        "",
        "Policy Split trained two modes of this model. The normal mode is the prompt as usual; the high-entropy "
        "mode, which explores more varied reasoning, is the same prompt with this instruction:",
        "",
        f"{fence}text\n{instruction}\n{fence}",
        "",
        "Where it goes, as in training:",
        "",
        "- a conversation whose first message is a system message: the instruction, a blank line, then that "
        "message's content;",
        "- any other conversation: a new first system message holding the instruction; when the chat template "
        "injects a default system prompt into conversations without one, the instruction is prepended to that "
        "default text, with a blank line;",
        "- a plain-text prompt: the instruction and a blank line before the prompt.",
        "",
        template,
        "",
        f"{fence}python",
        f"instruction = {instruction!r}",
        f'messages = [{{"role": "system", "content": {system}}}, {{"role": "user", "content": question}}]',
        fence,
        "",
        "`trl_policysplit.modes.to_high_entropy` applies these rules.",
    ]
    return "\n".join(lines)


def add_card_sections(output_dir: str, sections: list[str]) -> None:
    """Put sections into the README.md TRL wrote, before its citations."""
    text_sections = "\n\n".join(sections)
    path = os.path.join(output_dir, "README.md")
    with open(path, encoding="utf-8", newline="") as file:
        text = file.read()
    marker = "\n## Citations"
    if marker in text:
        text = text.replace(marker, f"\n{text_sections}\n{marker}", 1)
    else:
        text = f"{text.rstrip()}\n\n{text_sections}\n"
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write(text)


def local_base_model(path: str) -> str | None:
    """The hub id a local model directory's own card names as ``base_model`` (its README.md front matter)."""
    try:
        with open(os.path.join(path, "README.md"), encoding="utf-8") as file:
            text = file.read()
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    front = text.split("---", 2)[1]
    for line in front.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "base_model" and value.strip():
            return value.strip().strip("'\"")
    return None


def fill_card_placeholders(
    text: str, model_name: str, base_model: str | None, local_model: str | None, pipeline_model: str
) -> str:
    """TRL's card with what it leaves as "None" filled in: the model's name, the base model (from the local copy's
    own card, else the local path, unlinked) and the `pipeline` example's model (`pipeline_model`)."""
    text = text.replace("# Model Card for None", f"# Model Card for {model_name}")
    if base_model is not None:
        base = f"[{base_model}](https://huggingface.co/{base_model})"
    else:
        base = f"a local model (`{local_model}`)" if local_model else "a local model"
    text = text.replace("fine-tuned version of [None](https://huggingface.co/None)", f"fine-tuned version of {base}")
    text = text.replace('model="None"', f'model="{pipeline_model}"')
    if base_model is not None and text.startswith("---\n") and "\nbase_model:" not in text.split("\n---", 1)[0]:
        text = f"---\nbase_model: {base_model}\n" + text[4:]
    return text


def describe_dataset(output_dir: str, description: str) -> None:
    """Say what the training data was when it is not a hub dataset (TRL's card would link one that does not exist)."""
    add_card_sections(output_dir, [f"## Training data\n\n{description}"])
