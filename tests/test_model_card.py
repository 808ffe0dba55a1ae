"""Model cards name and cite the methods a run used, and say how to sample Policy Split's high-entropy mode."""

from __future__ import annotations

import os

import pytest
from tiny import conversational_dataset, digit_reward, trainer_settings
from transformers import AutoTokenizer
from trl import GRPOTrainer

from trl_policysplit import (
    AsymGRPOConfig,
    AsymGRPOTrainer,
    DiPOConfig,
    DiPOTrainer,
    PolicySplitConfig,
    PolicySplitTrainer,
)
from trl_policysplit.modes import DEFAULT_HIGH_ENTROPY_PROMPT
from trl_policysplit.shaping_config import AdvantageShapingConfig
from trl_policysplit.shaping_trainer import AdvantageShapingTrainer

GRPO = "2402.03300"
POLICY_SPLIT = "2604.11510"
ASYM_GRPO = "2604.04894"
DIPO = "2604.13902"
COV = "2505.22617"
ENTROPY_ADVANTAGE = "2506.14758"
OURS = {POLICY_SPLIT, ASYM_GRPO, DIPO, COV, ENTROPY_ADVANTAGE}


def build(trainer_class, config_class, model_dir, tmp_path, processing_class=None, **overrides):
    return trainer_class(
        model=model_dir,
        reward_funcs=digit_reward,
        args=config_class(**trainer_settings(tmp_path, **overrides)),
        train_dataset=conversational_dataset(),
        processing_class=processing_class,
    )


def model_card(trainer) -> str:
    trainer.create_model_card(model_name="tiny")
    with open(os.path.join(trainer.args.output_dir, "README.md"), encoding="utf-8") as file:
        return file.read()


def cited(card: str) -> set[str]:
    """arXiv ids of the card's BibTeX entries."""
    return {paper for paper in OURS | {GRPO} if f"eprint       = {{arXiv:{paper}}}" in card}


def card_tags(card: str) -> list[str]:
    header = card.split("---")[1]
    return [line.strip()[2:] for line in header.split("tags:")[1].splitlines() if line.strip().startswith("- ")]


@pytest.mark.parametrize(
    ("trainer_class", "config_class", "overrides", "papers", "name"),
    [
        (PolicySplitTrainer, PolicySplitConfig, {}, {POLICY_SPLIT}, "Policy Split"),
        (AsymGRPOTrainer, AsymGRPOConfig, {}, {ASYM_GRPO}, "AsymGRPO"),
        (DiPOTrainer, DiPOConfig, {}, {DIPO}, "DiPO"),
        (AdvantageShapingTrainer, AdvantageShapingConfig, {"policy_loss": "kl_cov"}, {COV}, "KL-Cov"),
        (AdvantageShapingTrainer, AdvantageShapingConfig, {"policy_loss": "clip_cov"}, {COV}, "Clip-Cov"),
        (
            AdvantageShapingTrainer,
            AdvantageShapingConfig,
            {"entropy_advantage_alpha": 0.4},
            {ENTROPY_ADVANTAGE},
            "entropy-based advantage",
        ),
    ],
)
def test_a_single_method_is_named_linked_and_cited_with_grpo(
    tiny_model_dir, tmp_path, trainer_class, config_class, overrides, papers, name
):
    card = model_card(build(trainer_class, config_class, tiny_model_dir, tmp_path, **overrides))
    assert cited(card) == papers | {GRPO}
    (paper,) = papers
    assert f"This model was trained with {name}, a method introduced in [" in card
    assert f"](https://huggingface.co/papers/{paper})." in card
    assert f"Cite {name} as:" in card
    methods = card.split("## Training methods")[1].split("## Citations")[0]
    assert f"- **{name}**, [" in methods and f"(arXiv {paper})" in methods
    assert f"(arXiv {GRPO})" in methods  # the base algorithm is named too
    assert "trl" in card_tags(card) and "grpo" in card_tags(card)


def test_the_methods_section_records_the_settings_that_ran(tiny_model_dir, tmp_path):
    trainer = build(AsymGRPOTrainer, AsymGRPOConfig, tiny_model_dir, tmp_path, beta_pos=0.7, beta_neg=0.3)
    methods = model_card(trainer).split("## Training methods")[1]
    assert "`asymmetric_advantages=True`, `beta_pos=0.7`, `beta_neg=0.3`" in methods
    assert "Trained with `AsymGRPOTrainer`" in methods


def test_asym_grpo_does_not_cite_policy_split(tiny_model_dir, tmp_path):
    card = model_card(build(AsymGRPOTrainer, AsymGRPOConfig, tiny_model_dir, tmp_path))
    assert ASYM_GRPO in card
    assert POLICY_SPLIT not in card
    assert "high-entropy mode" not in card
    assert "asym-grpo" in card_tags(card) and "policy-split" not in card_tags(card)


def test_policy_split_card_says_how_to_sample_the_high_entropy_mode(tiny_model_dir, tmp_path):
    card = model_card(build(PolicySplitTrainer, PolicySplitConfig, tiny_model_dir, tmp_path))
    assert "policy-split" in card_tags(card)
    section = card.split("## Sampling the high-entropy mode")[1].split("## Citations")[0]
    assert f"```text\n{DEFAULT_HIGH_ENTROPY_PROMPT}\n```" in section
    assert "first message is a system message: the instruction, a blank line, then that message's content" in section
    assert "a plain-text prompt: the instruction and a blank line before the prompt" in section
    assert "adds no default system prompt" in section  # the tiny template injects none
    assert f"instruction = {DEFAULT_HIGH_ENTROPY_PROMPT!r}" in section
    assert '[{"role": "system", "content": instruction}, {"role": "user", "content": question}]' in section
    # The sections sit in the card's body, before the citations and TRL's own BibTeX.
    assert (
        card.index("## Training methods")
        < card.index("## Sampling the high-entropy mode")
        < card.index("## Citations")
    )


def test_a_custom_instruction_and_the_templates_default_system_prompt_are_recorded(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    default = "You are a tiny assistant."
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
        + default
        + "<|im_end|>\n{% endif %}"
        + tokenizer.chat_template
    )
    instruction = "Think of three different approaches first.\nThen answer."
    trainer = build(
        PolicySplitTrainer,
        PolicySplitConfig,
        tiny_model_dir,
        tmp_path,
        processing_class=tokenizer,
        high_entropy_prompt=instruction,
    )
    section = model_card(trainer).split("## Sampling the high-entropy mode")[1]
    assert f"```text\n{instruction}\n```" in section
    assert DEFAULT_HIGH_ENTROPY_PROMPT not in section
    assert f"```text\n{default}\n```" in section
    assert f"instruction = {instruction!r}" in section
    assert f'"content": instruction + "\\n\\n" + {default!r}}}' in section


def test_policy_split_with_asym_grpo_cites_both(tiny_model_dir, tmp_path):
    trainer = build(PolicySplitTrainer, PolicySplitConfig, tiny_model_dir, tmp_path, asymmetric_advantages=True)
    card = model_card(trainer)
    assert cited(card) == {POLICY_SPLIT, ASYM_GRPO, GRPO}
    assert "This model was trained with Policy Split + AsymGRPO." in card  # no single "introduced in" paper
    assert "Cite Policy Split + AsymGRPO as:" in card
    assert {"policy-split", "asym-grpo"} <= set(card_tags(card))
    methods = card.split("## Training methods")[1].split("## Sampling the high-entropy mode")[0]
    assert f"(arXiv {POLICY_SPLIT})" in methods and f"(arXiv {ASYM_GRPO})" in methods
    assert "## Sampling the high-entropy mode" in card


def test_all_methods_together_are_cited_once_each(tiny_model_dir, tmp_path):
    trainer = build(
        PolicySplitTrainer,
        PolicySplitConfig,
        tiny_model_dir,
        tmp_path,
        asymmetric_advantages=True,
        perplexity_reallocation=True,
        policy_loss="clip_cov",
        entropy_advantage_alpha=0.4,
    )
    card = model_card(trainer)
    assert cited(card) == OURS | {GRPO}
    for paper in OURS | {GRPO}:
        assert card.count(f"eprint       = {{arXiv:{paper}}}") == 1


def test_flags_off_cites_only_grpo_as_trl_does(tiny_model_dir, tmp_path):
    trainer = build(AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path)
    card = model_card(trainer)
    assert cited(card) == {GRPO}
    assert not any(paper in card for paper in OURS)
    assert "This model was trained with GRPO, a method introduced in [" in card
    assert "## Training methods" not in card


def test_the_trainer_is_left_as_it_was(tiny_model_dir, tmp_path):
    trainer = build(PolicySplitTrainer, PolicySplitConfig, tiny_model_dir, tmp_path, perplexity_reallocation=True)
    model_card(trainer)
    assert trainer._name == "PolicySplit" and trainer._paper is GRPOTrainer._paper
    assert trainer._tag_names == PolicySplitTrainer._tag_names
    assert not {"_name", "_paper", "_tag_names"} & set(vars(trainer))


def test_a_checkpoint_writes_the_card(tiny_model_dir, tmp_path):
    trainer = build(
        PolicySplitTrainer,
        PolicySplitConfig,
        tiny_model_dir,
        tmp_path,
        max_steps=1,
        save_strategy="steps",
        save_steps=1,
        perplexity_reallocation=True,
    )
    trainer.train()
    with open(os.path.join(trainer.args.output_dir, "README.md"), encoding="utf-8") as file:
        card = file.read()
    assert cited(card) == {POLICY_SPLIT, DIPO, GRPO}
    assert DEFAULT_HIGH_ENTROPY_PROMPT in card


def test_no_placeholder_is_left_and_a_local_copy_names_its_hub_model(tiny_model_dir, tmp_path):
    """A local model directory whose own card names `base_model` (as the built-in SmolLM2 copy's does) gives the
    trained model's card that base model; the model's name defaults to the output directory's."""
    import shutil

    local = tmp_path / "local-copy"
    shutil.copytree(tiny_model_dir, local)
    (local / "README.md").write_text("---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n\nA copy.\n")
    trainer = build(PolicySplitTrainer, PolicySplitConfig, str(local), tmp_path)
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "None" not in card.replace("NoneType", "")
    assert "# Model Card for out" in card and f'model="{tmp_path / "out"}"' in card  # loadable from anywhere
    link = "[HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)"
    assert f"fine-tuned version of {link}" in card
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card.split("---")[1]


@pytest.mark.parametrize("flags", [{}, {"asymmetric_advantages": True}])
def test_a_local_model_without_a_card_is_named_by_its_path_not_none(tiny_model_dir, tmp_path, flags):
    trainer = build(AdvantageShapingTrainer, AdvantageShapingConfig, tiny_model_dir, tmp_path, **flags)
    card = model_card(trainer)
    assert "[None]" not in card and "huggingface.co/None" not in card and 'model="None"' not in card
    assert f"fine-tuned version of a local model (`{tiny_model_dir}`)" in card


def test_the_cli_describes_the_built_in_task_instead_of_linking_the_hub(tiny_model_dir, tmp_path):
    from trl_policysplit.tools.cli import main

    recipe = os.path.join(os.path.dirname(__file__), "..", "recipes", "demo", "smollm2_arithmetic_cpu.yaml")
    output = tmp_path / "run"
    arguments = ["--config", recipe, "--model_name_or_path", tiny_model_dir, "--output_dir", str(output)]
    assert main([*arguments, "--max_completion_length", "8", "--max_steps", "1"]) == 0
    card = (output / "README.md").read_text()
    assert "huggingface.co/datasets/arithmetic" not in card
    assert "## Training data\n\nThe built-in arithmetic task of trl-policysplit (not on the hub): level 1" in card
    assert "# Model Card for run" in card


def test_the_built_in_smollm2_copy_carries_a_card_naming_its_hub_model(tmp_path):
    from trl_policysplit.model_card import local_base_model
    from trl_policysplit.tools import smollm2

    smollm2._write_card(tmp_path)
    assert local_base_model(str(tmp_path)) == smollm2.SMOLLM2_HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "README.md").write_text("kept\n")
    smollm2._write_card(tmp_path)  # an existing card is never overwritten
    assert (tmp_path / "README.md").read_text() == "kept\n" and local_base_model(str(tmp_path)) is None
