"""Every recipe under recipes/ parses through the training CLI into the right config, with its values intact.

Nothing is downloaded: only the argument parser runs (no model, tokenizer or dataset is loaded), the hub is set
offline, and the loaders fail the test if anything calls them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path

import pytest
import yaml

from trl_policysplit.tools import cli

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TRAINING_RECIPES = sorted(path for path in RECIPES.rglob("*.yaml") if path.parent.name != "accelerate")
ACCELERATE_CONFIGS = sorted((RECIPES / "accelerate").glob("*.yaml"))
DEMO = RECIPES / "demo" / "smollm2_arithmetic_cpu.yaml"
PAPER_RECIPES = [path for path in TRAINING_RECIPES if path.parent.name != "demo"]
ARXIV_ID = re.compile(r"arXiv[ :]?\d{4}\.\d{4,5}")

# bf16 needs a GPU: TrainingArguments rejects it at construction on a CPU machine, so the tests parse every recipe with
# these overrides and check the file's own values separately (test_gpu_settings_stay_in_the_file). `use_vllm: true`
# is NOT overridden: it only fails when the trainer is built, so the parser keeps (and the tests compare) the file's
# value.
CPU_OVERRIDES = {"bf16": False, "use_cpu": True}


def _rel(path: Path) -> str:
    return str(path.relative_to(RECIPES))


def _load(path: Path) -> dict:
    with path.open() as handle:
        return yaml.safe_load(handle)


def _parse(path: Path, output_dir: Path, *extra: str):
    argv = ["--config", str(path), "--output_dir", str(output_dir)]
    for key, value in CPU_OVERRIDES.items():
        argv += [f"--{key}", str(value).lower()]
    return cli.parse_arguments([*argv, *extra])


def _normalize(value):
    """The parsed form of a YAML value as the file spells it: enums (lr_scheduler_type, save_strategy) by value."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")

    def forbidden(*args, **kwargs):
        raise AssertionError("parsing a recipe must not load a model, tokenizer or dataset")

    import datasets
    import transformers

    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", forbidden)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", forbidden)
    monkeypatch.setattr(cli, "load_model_and_tokenizer", forbidden)
    monkeypatch.setattr(cli, "load_split", forbidden)


def test_recipes_are_found():
    names = {_rel(path) for path in TRAINING_RECIPES}
    assert {
        "demo/smollm2_arithmetic_cpu.yaml",
        "policy_split/qwen3_1.7b_math.yaml",
        "policy_split/qwen3_4b_math.yaml",
        "policy_split/qwen3_8b_math.yaml",
        "policy_split/qwen3_8b_math_authors_protocol.yaml",
        "policy_split/qwen3_1.7b_math_vllm_server.yaml",
        "demo/smollm2_arithmetic_cpu_vllm.yaml",
        "asym_grpo/qwen3_4b_math.yaml",
        "asym_grpo/qwen3_4b_math_clip_higher.yaml",
        "dipo/qwen3_8b_base_math.yaml",
        "baselines/grpo_qwen3_1.7b_math.yaml",
        "baselines/entropy_bonus_qwen3_1.7b_math.yaml",
        "baselines/clip_higher_qwen3_1.7b_math.yaml",
        "baselines/forking_tokens_qwen3_1.7b_math.yaml",
        "baselines/clip_cov_qwen3_1.7b_math.yaml",
        "baselines/kl_cov_qwen3_1.7b_math.yaml",
        "baselines/entropy_advantage_qwen3_1.7b_math.yaml",
    } <= names


@pytest.mark.parametrize("path", TRAINING_RECIPES, ids=_rel)
def test_recipe_parses_into_its_trainer_config(path, tmp_path):
    raw = _load(path)
    script_args, training_args, model_args = _parse(path, tmp_path)

    config_class, _ = cli.TRAINERS[raw["trainer"]]
    assert isinstance(training_args, config_class)
    assert type(training_args) is config_class  # not just a subclass: the trainer's own defaults apply
    assert script_args.trainer == raw["trainer"]
    for override, value in CPU_OVERRIDES.items():
        assert getattr(training_args, override) == value
    assert training_args.output_dir == str(tmp_path)

    # Every top-level key is a field of exactly one of the three dataclasses and comes back unchanged.
    parsed = {"script": script_args, "training": training_args, "model": model_args}
    for key, value in raw.items():
        owners = [name for name, obj in parsed.items() if key in {f.name for f in dataclasses.fields(obj)}]
        assert len(owners) == 1, f"{_rel(path)}: key {key!r} belongs to {owners or 'no dataclass'}"
        if key in CPU_OVERRIDES or key == "output_dir":
            continue
        got = _normalize(getattr(parsed[owners[0]], key))
        if key == "report_to" and value == "none":
            assert got in ([], ["none"], "none"), f"{_rel(path)}: report_to -> {got!r}"
            continue
        assert got == value, f"{_rel(path)}: {key}: file has {value!r}, parsed {got!r}"
        assert type(got) is type(value) or {type(got), type(value)} <= {int, float}, (key, got, value)

    for name in script_args.reward_funcs:
        assert name in cli.REWARDS or ":" in name or "." in name, name


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=_rel)
def test_gpu_settings_stay_in_the_file(path):
    """The CPU overrides above are the test's, not the recipe's: the files keep their GPU settings."""
    raw = _load(path)
    assert raw["bf16"] is True
    assert raw.get("use_cpu", False) is False
    assert raw["dtype"] == "bfloat16"
    assert raw["use_vllm"] is True and raw["vllm_mode"] == ("server" if "vllm_server" in path.name else "colocate")


def test_demo_is_a_cpu_recipe():
    raw = _load(DEMO)
    assert raw["use_cpu"] is True and raw["bf16"] is False


def test_vllm_demo_is_the_demo_with_a_colocated_engine(tmp_path):
    path = RECIPES / "demo" / "smollm2_arithmetic_cpu_vllm.yaml"
    raw, demo = _load(path), _load(DEMO)
    vllm_keys = {"use_vllm", "vllm_mode", "vllm_max_model_length"}
    assert {k: v for k, v in raw.items() if k not in vllm_keys | {"output_dir"}} == {
        k: v for k, v in demo.items() if k != "output_dir"
    }
    assert raw["output_dir"] != demo["output_dir"]
    _, training_args, _ = _parse(path, tmp_path)
    assert training_args.use_vllm and training_args.vllm_mode == "colocate" and training_args.use_cpu
    assert "scripts/run_vllm_tests.sh" in _header(path)


def test_vllm_server_recipe_is_the_colocated_one_on_a_server(tmp_path):
    colocated = _load(RECIPES / "policy_split" / "qwen3_1.7b_math.yaml")
    path = RECIPES / "policy_split" / "qwen3_1.7b_math_vllm_server.yaml"
    raw = _load(path)
    server_keys = {"vllm_mode", "vllm_server_host", "vllm_server_port", "vllm_gpu_memory_utilization"}
    changed = server_keys | {"output_dir", "gradient_accumulation_steps"}
    assert {k: v for k, v in raw.items() if k not in changed} == {
        k: v for k, v in colocated.items() if k not in changed
    }
    training_gpus = 4  # the 8 GPUs of the colocated recipe, less the ones the server's launch line takes
    assert raw["per_device_train_batch_size"] * raw["gradient_accumulation_steps"] * training_gpus == 512
    header = _header(path)
    assert f"trl vllm-serve --model {raw['model_name_or_path']} --port {raw['vllm_server_port']}" in header
    assert f"--num_processes {training_gpus}" in header
    _, training_args, _ = _parse(path, tmp_path)
    assert training_args.vllm_mode == "server" and training_args.vllm_server_port == raw["vllm_server_port"]


def _header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=_rel)
def test_header_cites_the_paper_and_the_launch_command(path):
    header = _header(path)
    assert ARXIV_ID.search(header), f"{_rel(path)}: the header cites no arXiv id"
    assert "accelerate launch --config_file recipes/accelerate/" in header
    assert f"--config recipes/{_rel(path)}" in header


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=_rel)
def test_every_value_is_marked_paper_or_ours(path):
    """`# paper`, `# ours`, or a source with its arXiv id (`# DAPO, arXiv 2503.14476`) on every top-level key."""
    unmarked = []
    for line in path.read_text().splitlines():
        if not line or line[0] in "# ":
            continue
        _, _, comment = line.partition("  # ")
        if not re.match(r"(paper|ours)\b", comment) and not ARXIV_ID.search(comment):
            unmarked.append(line)
    assert not unmarked, f"{_rel(path)}: values without a source mark: {unmarked}"


def test_readme_lists_every_recipe():
    readme = (RECIPES / "README.md").read_text()
    for path in [*TRAINING_RECIPES, *ACCELERATE_CONFIGS]:
        assert _rel(path) in readme or path.name in readme, path


# ---------------------------------------------------------------------------------------------------------------
# What each recipe reproduces


def test_asym_grpo_paper_settings():
    for name in ("qwen3_4b_math.yaml", "qwen3_4b_math_clip_higher.yaml"):
        raw = _load(RECIPES / "asym_grpo" / name)
        assert raw["trainer"] == "asym_grpo" and raw["asymmetric_advantages"] is True
        assert (raw["beta_pos"], raw["beta_neg"]) == (0.9, 0.4)
        assert raw["learning_rate"] == 2.0e-6
        assert raw["num_generations"] == 8
        assert raw["max_completion_length"] == 4096
        gpus = 8
        completions = raw["per_device_train_batch_size"] * raw["gradient_accumulation_steps"] * gpus
        assert completions / raw["num_generations"] == 128  # prompts per step
    plain = _load(RECIPES / "asym_grpo" / "qwen3_4b_math.yaml")
    clip_higher = _load(RECIPES / "asym_grpo" / "qwen3_4b_math_clip_higher.yaml")
    assert "epsilon_high" not in plain and clip_higher["epsilon_high"] == 0.28
    assert {k: v for k, v in clip_higher.items() if k not in ("epsilon_high", "output_dir")} == {
        k: v for k, v in plain.items() if k != "output_dir"
    }


def test_dipo_paper_and_dapo_settings(tmp_path):
    raw = _load(RECIPES / "dipo" / "qwen3_8b_base_math.yaml")
    assert raw["model_name_or_path"] == "Qwen/Qwen3-8B-Base"
    assert raw["ppl_alpha"] == 0.1 and raw["perplexity_reallocation"] is True
    assert raw["epsilon_high"] == 0.28 and raw["loss_type"] == "dapo" and raw["beta"] == 0.0
    _, training_args, _ = _parse(RECIPES / "dipo" / "qwen3_8b_base_math.yaml", tmp_path)
    assert training_args.asymmetric_advantages is False  # DiPO on GRPO advantages, not AsymGRPO


def test_policy_split_recipes_differ_only_in_model_and_batch_split():
    recipes = {size: _load(RECIPES / "policy_split" / f"qwen3_{size}_math.yaml") for size in ("1.7b", "4b", "8b")}
    varying = {"model_name_or_path", "output_dir", "per_device_train_batch_size", "gradient_accumulation_steps"}
    for size, raw in recipes.items():
        assert raw["trainer"] == "policy_split" and raw["num_generations"] % 2 == 0
        assert raw["model_name_or_path"] == f"Qwen/Qwen3-{size.upper()}"
        gpus = 8
        assert raw["per_device_train_batch_size"] * raw["gradient_accumulation_steps"] * gpus == 512
        assert {k: v for k, v in raw.items() if k not in varying} == {
            k: v for k, v in recipes["1.7b"].items() if k not in varying
        }


def test_authors_protocol_recipe_differs_from_ours_only_in_the_authors_settings(tmp_path):
    ours = _load(RECIPES / "policy_split" / "qwen3_8b_math.yaml")
    path = RECIPES / "policy_split" / "qwen3_8b_math_authors_protocol.yaml"
    authors = _load(path)
    changed = {"output_dir", "gradient_accumulation_steps", "steps_per_generation", "completions_per_mode", "kappa"}
    assert {k: v for k, v in authors.items() if k not in changed} == {
        k: v for k, v in ours.items() if k not in changed
    }
    assert _updates_per_rollout(authors) == 4 and authors["kappa"] == 0.0
    _, training_args, _ = _parse(path, tmp_path)
    assert training_args.completions_per_mode == "num_generations"
    # Our recipe's 512 completions per optimizer step: half its questions, each with twice the completions.
    gpus = 8
    questions = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * gpus
    questions //= training_args.num_generations
    assert questions * 2 * training_args.num_generations == 512
    assert questions == ours["per_device_train_batch_size"] * ours["gradient_accumulation_steps"] * gpus // 8 // 2


# Clip-Cov and KL-Cov run their authors' update schedule (several updates per rollout), not the Policy Split recipe's.
AUTHORS_SCHEDULE = {"gradient_accumulation_steps", "steps_per_generation"}
BASELINE_KNOBS = {
    "grpo_qwen3_1.7b_math.yaml": set(),
    "entropy_bonus_qwen3_1.7b_math.yaml": {"entropy_coef"},
    "clip_higher_qwen3_1.7b_math.yaml": {"epsilon", "epsilon_high"},
    "forking_tokens_qwen3_1.7b_math.yaml": {"top_entropy_quantile"},
    "clip_cov_qwen3_1.7b_math.yaml": {"policy_loss", "clip_cov_ratio", "clip_cov_lb", "clip_cov_ub", "epsilon"}
    | {"epsilon_high"}
    | AUTHORS_SCHEDULE,
    "kl_cov_qwen3_1.7b_math.yaml": {"policy_loss", "kl_cov_ratio", "kl_cov_coef", "kl_cov_keep_ppo_clip"}
    | AUTHORS_SCHEDULE,
    "entropy_advantage_qwen3_1.7b_math.yaml": {"entropy_advantage_alpha", "entropy_advantage_kappa"},
}
POLICY_SPLIT_ONLY = {
    "trainer",
    "output_dir",
    "share_rollouts",
    "entropy_estimator",
    "alpha",
    "eta_high",
    "eta_normal",
    "kappa",
    "bonus_normalization",
}


@pytest.mark.parametrize("name", sorted(BASELINE_KNOBS))
def test_baselines_share_the_policy_split_settings(name, tmp_path):
    policy_split = _load(RECIPES / "policy_split" / "qwen3_1.7b_math.yaml")
    raw = _load(RECIPES / "baselines" / name)
    assert raw["trainer"] == "grpo"
    knobs = BASELINE_KNOBS[name]
    shared = {k: v for k, v in policy_split.items() if k not in POLICY_SPLIT_ONLY | knobs}
    assert {k: v for k, v in raw.items() if k not in knobs | {"trainer", "output_dir"}} == shared

    _, training_args, _ = _parse(RECIPES / "baselines" / name, tmp_path)
    assert (training_args.entropy_coef > 0) == ("entropy_coef" in knobs)
    expected_clip = {"clip_higher_qwen3_1.7b_math.yaml": (0.2, 0.28), "clip_cov_qwen3_1.7b_math.yaml": (1.0, 1.0)}
    assert (training_args.epsilon, training_args.epsilon_high) == expected_clip.get(name, (0.2, None))  # None: epsilon
    assert training_args.top_entropy_quantile == (0.2 if "top_entropy_quantile" in knobs else 1.0)
    expected_loss = raw.get("policy_loss", "ppo")
    assert training_args.policy_loss == expected_loss
    assert (training_args.entropy_advantage_alpha > 0) == ("entropy_advantage_alpha" in knobs)


def _updates_per_rollout(raw: dict) -> float:
    """Optimizer updates each generation batch gets, in TRL's terms (steps_per_generation defaults to the
    accumulation; num_iterations passes over the same batch)."""
    accumulation = raw.get("gradient_accumulation_steps", 1)
    steps_per_generation = raw.get("steps_per_generation", accumulation)
    return steps_per_generation / accumulation * raw.get("num_iterations", 1)


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=_rel)
def test_header_states_the_updates_per_rollout_the_recipe_gets(path):
    match = re.search(r"^# Updates: (\d+) optimizer updates? per rollout \((.+?)[:)]", _header(path), re.M)
    assert match, f"{_rel(path)}: the header does not say how many optimizer updates each rollout gets"
    assert int(match.group(1)) == _updates_per_rollout(_load(path))
    assert match.group(2).strip(), "and why"


@pytest.mark.parametrize("name", ["clip_cov_qwen3_1.7b_math.yaml", "kl_cov_qwen3_1.7b_math.yaml"])
def test_covariance_baselines_run_the_authors_schedule_and_clipping(name, tmp_path):
    """arXiv 2505.22617's scripts: 256 prompts per rollout, PPO mini-batches of 32 prompts (8 updates per rollout),
    no PPO clip for KL-Cov, clip range 1 for Clip-Cov."""
    raw = _load(RECIPES / "baselines" / name)
    gpus = 8
    completions_per_update = raw["per_device_train_batch_size"] * raw["gradient_accumulation_steps"] * gpus
    completions_per_rollout = raw["per_device_train_batch_size"] * raw["steps_per_generation"] * gpus
    assert completions_per_update / raw["num_generations"] == 32
    assert completions_per_rollout / raw["num_generations"] == 256
    assert _updates_per_rollout(raw) == 8
    _, training_args, _ = _parse(RECIPES / "baselines" / name, tmp_path)
    assert training_args.steps_per_generation == 64 and training_args.num_iterations == 1
    if name.startswith("kl_cov"):
        assert training_args.kl_cov_keep_ppo_clip is False and training_args.kl_cov_ratio == 2e-3
    else:
        assert (training_args.epsilon, training_args.epsilon_high) == (1.0, 1.0)
        assert (training_args.clip_cov_ratio, training_args.clip_cov_lb, training_args.clip_cov_ub) == (2e-4, 1.0, 5.0)


# ---------------------------------------------------------------------------------------------------------------
# Mistakes in a recipe


def test_unknown_key_is_an_error(tmp_path):
    """A misspelled key is not silently dropped: the CLI reports it as CLIError (one line, no traceback) with the
    closest known key. Config keys are matched exactly (argparse's prefix matching applies only to command-line
    flags)."""
    recipe = _load(RECIPES / "policy_split" / "qwen3_1.7b_math.yaml")
    recipe["learning_rat"] = recipe.pop("learning_rate")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(cli.CLIError, match=r"sets unknown key learning_rat \(did you mean learning_rate\?\)$"):
        _parse(path, tmp_path / "out")


def test_unknown_command_line_flag_is_an_error(tmp_path):
    with pytest.raises(cli.CLIError, match=r"^unknown flag --no_such_flag \(see trl-policysplit --help-all\)$"):
        _parse(RECIPES / "policy_split" / "qwen3_1.7b_math.yaml", tmp_path, "--no_such_flag", "1")


def test_unknown_trainer_is_an_error(tmp_path):
    path = tmp_path / "bad_trainer.yaml"
    path.write_text("trainer: ppo\n")
    with pytest.raises(cli.CLIError, match="unknown trainer 'ppo'"):
        _parse(path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------------------
# Accelerate configs


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=_rel)
def test_accelerate_config_is_valid(path):
    raw = _load(path)
    assert isinstance(raw, dict)
    assert raw["distributed_type"] in {"NO", "MULTI_GPU", "MULTI_CPU", "DEEPSPEED", "FSDP"}
    assert isinstance(raw["num_processes"], int) and raw["num_processes"] >= 1
    if raw["distributed_type"] == "DEEPSPEED":
        assert raw["deepspeed_config"]["zero_stage"] in (2, 3)
    if not path.name.startswith("cpu_"):
        assert raw["use_cpu"] is False and raw["mixed_precision"] == "bf16"
        header = _header(path)
        assert f"accelerate launch --config_file recipes/accelerate/{path.name}" in header, path.name


def test_multi_node_config():
    path = RECIPES / "accelerate" / "multi_node_deepspeed_zero3.yaml"
    raw = _load(path)
    assert raw["num_machines"] == 2
    assert raw["num_processes"] == 16  # accelerate counts processes over all machines: 2 x 8 GPUs
    assert raw["distributed_type"] == "DEEPSPEED" and raw["deepspeed_config"]["zero_stage"] == 3
    header = _header(path)
    for rank in (0, 1):
        assert re.search(
            r"accelerate launch --config_file recipes/accelerate/multi_node_deepspeed_zero3\.yaml"
            rf" --machine_rank {rank} \\\n#\s+--main_process_ip \S+ --main_process_port \d+",
            header,
        ), rank
    assert "scripts/train.py --config recipes/" in header


def test_accelerate_accepts_the_configs():
    from accelerate.commands.config.config_args import load_config_from_file

    for path in ACCELERATE_CONFIGS:
        config = load_config_from_file(str(path))
        assert config.num_processes == _load(path)["num_processes"]
