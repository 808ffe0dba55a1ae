"""The TRL and transformers private members this package relies on, checked once when it is imported.

The trainers override or call private hooks of `GRPOTrainer` (and of transformers' `Trainer`); a TRL release may
rename them or change their arguments, and a user would then see a `TypeError` from inside a hook at step 0. This
module lists every such member with the parameters the trainers pass, and `check_private_surface` (run by
`import trl_policysplit`) compares them with the installed versions: a mismatch is one `ImportError` that names the
installed trl, the member, and the supported range. It is also the only module that reads or writes such a private
(the accessors at the end: TRL's metric store and completions log, its tokenizer, transformers' DeepSpeed config,
a model's source path, argparse's option list); a test fails on any other use in the package.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import torch
from packaging.specifiers import SpecifierSet

SUPPORTED_TRL_RANGE = ">=1.16.0,<1.17"  # setup.cfg declares the same; 1.16.0 is the only release in it
SUPPORTED_TRL = SpecifierSet(SUPPORTED_TRL_RANGE)
TESTED_TRL = "1.16.0"
TRL_VLLM_RANGE = ("0.22.0", "0.31.0")  # the vLLM versions TRL 1.16 accepts (trl.import_utils.is_vllm_available)

_GRPO = "trl.trainer.grpo_trainer.GRPOTrainer"
_TRAINER = "transformers.trainer.Trainer"
_VLLM = "trl.generation.vllm_generation.VLLMGeneration"
_VLLM_CLIENT = "trl.generation.vllm_client.VLLMClient"

# member -> the leading parameters the package passes (positionally or by these names); later ones must have defaults.
PRIVATE_SURFACE: dict[str, tuple[str, ...]] = {
    f"{_GRPO}._generate_and_score_completions": ("self", "inputs"),
    f"{_GRPO}._generate_single_turn": (
        "self",
        "prompt_ids",
        "images",
        "multimodal_fields",
        "num_generations",
        "has_tool_images",
    ),
    f"{_GRPO}._calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    f"{_GRPO}._compute_loss": ("self", "model", "inputs"),
    f"{_GRPO}._get_per_token_logps_and_entropies": (
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
        "compute_entropy",
    ),
    f"{_GRPO}._tokenize_prompts": ("self", "prompts"),
    f"{_TRAINER}._save": ("self", "output_dir", "state_dict"),
    f"{_TRAINER}._save_optimizer_and_scheduler": ("self", "output_dir"),
    f"{_TRAINER}._load_optimizer_and_scheduler": ("self", "checkpoint"),
    # vllm_cpu.py: the CPU weight sync subclasses TRL's vLLM backend and replaces it while a trainer is built.
    f"{_VLLM}._init_vllm": ("self",),
    f"{_VLLM}.sync_weights": ("self",),
    f"{_VLLM}._iter_named_params": ("self",),
    f"{_VLLM_CLIENT}._post": ("self", "url"),  # `collective_rpc`: TRL's client has no public call for it
}
# Class attributes read by the model card.
PRIVATE_ATTRIBUTES: tuple[str, ...] = (
    f"{_GRPO}._paper",
    f"{_GRPO}._tag_names",
    f"{_GRPO}._name",
)
# Replaced for the length of a `with` block by `swapped` (vllm_cpu.py's CPU weight sync); checked where vLLM is.
SWAPPABLE: tuple[str, ...] = ("trl.trainer.grpo_trainer.VLLMGeneration", "trl.generation.vllm_generation.LLM")
# Set by `GRPOTrainer.__init__` and read by the trainers: checked on the instance (`check_instance`).
INSTANCE_ATTRIBUTES: tuple[str, ...] = ("_metrics", "_logs", "_tokenizer")


def _resolve(path: str) -> object:
    """The object at a dotted path: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(path)


def _mismatch(path: str, expected: tuple[str, ...]) -> str | None:
    """Why the installed member differs from what the package relies on, or None."""
    try:
        member = _resolve(path)
    except (ImportError, AttributeError):
        return "it no longer exists"
    parameters = list(inspect.signature(member).parameters.values())
    names = [parameter.name for parameter in parameters]
    if names[: len(expected)] != list(expected):
        return f"it takes ({', '.join(names)}) where the package passes ({', '.join(expected)})"
    named_kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    required = [p.name for p in parameters[len(expected) :] if p.default is p.empty and p.kind in named_kinds]
    if required:
        return f"it requires ({', '.join(required)}) that the package does not pass"
    return None


def surface_problems() -> list[str]:
    """Every private member whose installed form differs from the one the package relies on."""
    problems = [
        f"{path}: {reason}"
        for path, expected in PRIVATE_SURFACE.items()
        if (reason := _mismatch(path, expected)) is not None
    ]
    swappable = [path for path in SWAPPABLE if not path.endswith(".LLM") or importlib.util.find_spec("vllm")]
    for path in (*PRIVATE_ATTRIBUTES, *swappable):
        try:
            _resolve(path)
        except (ImportError, AttributeError):
            problems.append(f"{path}: it no longer exists")
    return problems


def _range_hint() -> str:
    return (
        f"trl-policysplit supports trl{SUPPORTED_TRL_RANGE} (tested with {TESTED_TRL}): "
        f"pip install 'trl{SUPPORTED_TRL_RANGE}'"
    )


def check_private_surface() -> None:
    """Raise one ImportError if the installed TRL lacks a member the trainers rely on; warn outside the range."""
    installed = version("trl")
    problems = surface_problems()
    if problems:
        raise ImportError(
            f"trl {installed} changed {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + f"; {_range_hint()}."
        )
    if installed not in SUPPORTED_TRL:
        warnings.warn(f"trl {installed} is outside the tested range; {_range_hint()}.", stacklevel=2)


def check_instance(trainer: object) -> None:
    """After `GRPOTrainer.__init__`: the instance attributes the trainers read exist."""
    missing = [name for name in INSTANCE_ATTRIBUTES if not hasattr(trainer, name)]
    if missing:
        raise ImportError(f"trl {version('trl')}'s GRPOTrainer no longer sets {', '.join(missing)}; {_range_hint()}.")


@contextmanager
def swapped(path: str, value: object) -> Iterator[None]:
    """Replace one of TRL's module attributes (`SWAPPABLE`) inside the block, and put the original back."""
    if path not in SWAPPABLE:
        raise ValueError(f"{path} is not one of the TRL attributes this package may swap: {', '.join(SWAPPABLE)}")
    module_name, name = path.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


# ----------------------------------------------------------------------------------------------------------------
# Accessors: every read or write of a TRL/transformers private the trainers need goes through one of these.


def metrics(trainer: object, mode: str) -> dict[str, list[float]]:
    """The trainer's per-mode metric lists, which TRL averages into each log (`GRPOTrainer._metrics`)."""
    return trainer._metrics[mode]


def replace_logged_advantages(trainer: object, advantages: torch.Tensor) -> None:
    """TRL keeps the advantages it computed for its completions table (`_logs["advantages"]`): show these instead."""
    logged = trainer._logs["advantages"]
    for _ in range(min(advantages.numel(), len(logged))):
        logged.pop()
    logged.extend(advantages.tolist())


def pad_token_id(trainer: object) -> int:
    """The pad token TRL pads prompts with (`GRPOTrainer._tokenizer`, the tokenizer of a processor too)."""
    return trainer._tokenizer.pad_token_id


def model_source(model: object) -> str:
    """Where a model or model id came from (`PretrainedConfig._name_or_path` for a loaded model)."""
    return model if isinstance(model, str) else str(model.config._name_or_path)


@contextmanager
def card_identity(trainer: object, identity: dict[str, object]) -> Iterator[None]:
    """Shadow TRL's model-card class attributes (`_tag_names`, `_name`, `_paper`) on the instance for one call."""
    unknown = [name for name in identity if f"{_GRPO}.{name}" not in PRIVATE_ATTRIBUTES]
    if unknown:
        raise ValueError(f"{unknown} are not TRL model-card attributes")
    shadowed = {name: trainer.__dict__[name] for name in identity if name in trainer.__dict__}
    trainer.__dict__.update(identity)
    try:
        yield
    finally:
        for name in identity:
            del trainer.__dict__[name]
        trainer.__dict__.update(shadowed)


def collective_rpc(client: object, method: str, *args: str) -> dict:
    """Call ``method`` on every vLLM worker of a `trl vllm-serve` server (its ``/collective_rpc`` route)."""
    return client._post(f"{client.base_url}/collective_rpc", json={"method": method, "args": list(args)})


def drop_gguf_model_name(config: object) -> None:
    """Forget the name transformers' GGUF loader stores on a config (`_model_name_or_path`, the file's
    ``general.name``, not a path), so a converted model does not save it."""
    config.__dict__.pop("_model_name_or_path", None)


def parser_actions(parser: object) -> list:
    """Every option of an argparse (TRL's `TrlParser`) parser: argparse has no public call that lists them."""
    return list(parser._actions)


def add_action(group: object, action: object) -> None:
    """Add an existing option to an argparse group (no public call takes an action object)."""
    group._add_action(action)


def rebuild_deepspeed_config(original: object, adjusted: object) -> list[str]:
    """Re-derive transformers' DeepSpeed config for ``adjusted`` (a copy of the training arguments ``original`` with
    other batch sizes), since transformers read the batch sizes into it when the arguments were built. Returns the
    mismatches the new sizes cause with values the DeepSpeed config fixes (empty when all are "auto")."""
    from accelerate.utils import DeepSpeedPlugin
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    adjusted.hf_deepspeed_config = HfTrainerDeepSpeedConfig(original.deepspeed)
    adjusted.hf_deepspeed_config.trainer_config_process(adjusted)
    before = original.hf_deepspeed_config.mismatches
    new = [mismatch for mismatch in adjusted.hf_deepspeed_config.mismatches if mismatch not in before]
    adjusted.deepspeed_plugin = DeepSpeedPlugin(hf_ds_config=adjusted.hf_deepspeed_config)
    return new
