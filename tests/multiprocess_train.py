"""Two short PolicySplitTrainer steps on the tiny offline model, for the multi-process tests.

Run plainly (``python tests/multiprocess_train.py ...``) for the 1-process reference, or under
``accelerate launch --config_file recipes/accelerate/cpu_deepspeed_zero2.yaml tests/multiprocess_train.py ...``.
The global batch is fixed (``--questions`` x ``--num-generations`` completions per step) whatever the number of
processes, so global per-mode counts must match between runs. The main process writes
``trainer.state.log_history`` as JSON to ``--output`` and, with ``--save-dir``, the trained model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import conversational_dataset, digit_reward  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from trl_policysplit import PolicySplitConfig, PolicySplitTrainer  # noqa: E402


def char_diversity_reward(completions, **kwargs) -> list[float]:
    """Deterministic reward in [0, 1] that almost always differs between random completions: distinct chars / 16."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [min(len(set(text)), 16) / 16.0 for text in texts]


def run_info(trainer: PolicySplitTrainer) -> dict[str, object]:
    """How the trainer is distributed, so the tests can check that DeepSpeed or DDP really ran."""
    plugin = trainer.accelerator.state.deepspeed_plugin
    return {
        "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
        "num_processes": trainer.accelerator.num_processes,
        "device": str(trainer.accelerator.device),
        "zero_stage": plugin.zero_stage if plugin is not None else None,
        "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
        "engine": type(trainer.model_wrapped).__name__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="Directory of the tiny model built by tests/tiny.py.")
    parser.add_argument("--output", required=True, help="Where the main process writes the log history (JSON).")
    parser.add_argument("--work-dir", default=None, help="Trainer output_dir (default: next to --output).")
    parser.add_argument("--save-dir", default=None, help="Save the trained model here (main process writes).")
    parser.add_argument("--run-info", default=None, help="Write how the run was distributed here (JSON).")
    parser.add_argument("--questions", type=int, default=3, help="Questions per step (global).")
    parser.add_argument("--num-generations", type=int, default=4, help="Completions per question (even).")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--max-completion-length", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (> 0 loads a reference model).")
    parser.add_argument("--entropy-estimator", default="surprisal", choices=("surprisal", "entropy"))
    parser.add_argument(
        "--share-rollouts", action=argparse.BooleanOptionalAction, default=True, help="Train the cross pairs too."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train for ``--max-steps`` steps with a fixed global batch and dump the log history."""
    args = parse_args(argv)
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launcher; no state may exist before the config
    global_batch = args.questions * args.num_generations
    if global_batch % num_processes != 0:
        raise ValueError(f"The global batch {global_batch} must be divisible by {num_processes} processes.")
    output = Path(args.output)
    config = PolicySplitConfig(
        output_dir=args.work_dir or str(output.parent / f"{output.stem}-trainer"),
        per_device_train_batch_size=global_batch // num_processes,
        gradient_accumulation_steps=1,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        max_steps=args.max_steps,
        learning_rate=1e-2,
        beta=args.beta,
        share_rollouts=args.share_rollouts,
        entropy_estimator=args.entropy_estimator,
        # Needed under DeepSpeed on CPU too: accelerate's DeepSpeed launcher ignores the YAML's `use_cpu`, and without
        # it (or ddp_backend="gloo") accelerate finds no backend on a machine without GPUs and sees one process.
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    trainer = PolicySplitTrainer(
        model=model,
        reward_funcs=[digit_reward, char_diversity_reward],
        args=config,
        train_dataset=conversational_dataset(16),
        processing_class=tokenizer,
    )
    trainer.train()
    if args.save_dir:
        trainer.save_model(args.save_dir)  # collective under ZeRO-3: every process calls it
    if trainer.accelerator.is_main_process:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(trainer.state.log_history, indent=1))
        if args.run_info:
            Path(args.run_info).write_text(json.dumps(run_info(trainer), indent=1))
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()
