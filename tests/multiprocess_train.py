"""Two short training steps of a trainer of this package on the tiny offline model, for the multi-process tests.

Run plainly (``python tests/multiprocess_train.py ...``) for the 1-process reference, or under
``accelerate launch --config_file recipes/accelerate/cpu_deepspeed_zero2.yaml tests/multiprocess_train.py ...``.
The global batch is fixed (``--questions`` x ``--num-generations`` completions per step) whatever the number of
processes, so global per-mode counts must match between runs. The main process writes
``trainer.state.log_history`` as JSON to ``--output``, with ``--save-dir`` the trained model, and with ``--run-info``
how the run was distributed (backend, ZeRO stage, process count), so tests can check DeepSpeed really ran. With
``--queue-dir`` every process writes its DiPO perplexity queue and threshold (and Policy Split's adapted
``eta_high``), so tests can check they agree.
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

from trl_policysplit import (  # noqa: E402
    AsymGRPOConfig,
    AsymGRPOTrainer,
    DiPOConfig,
    DiPOTrainer,
    PolicySplitConfig,
    PolicySplitTrainer,
)

TRAINERS = {
    "policy_split": (PolicySplitConfig, PolicySplitTrainer),
    "asym_grpo": (AsymGRPOConfig, AsymGRPOTrainer),
    "dipo": (DiPOConfig, DiPOTrainer),
}


def char_diversity_reward(completions: list, **kwargs: object) -> list[float]:
    """Deterministic reward in [0, 1] that almost always differs between random completions: distinct chars / 16."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [min(len(set(text)), 16) / 16.0 for text in texts]


def run_info(trainer: PolicySplitTrainer | DiPOTrainer) -> dict[str, object]:
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
    parser.add_argument("--trainer", default="policy_split", choices=sorted(TRAINERS))
    parser.add_argument("--queue-dir", default=None, help="Every process writes its DiPO queue and threshold here.")
    parser.add_argument("--asymmetric-advantages", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--perplexity-reallocation", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--questions", type=int, default=3, help="Questions per step (global).")
    parser.add_argument("--num-generations", type=int, default=4, help="Completions per question (even).")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--num-iterations", type=int, default=1, help="Optimization passes per generation.")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--max-completion-length", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (> 0 loads a reference model).")
    parser.add_argument("--entropy-estimator", default="surprisal", choices=("surprisal", "entropy"))
    parser.add_argument(
        "--share-rollouts", action=argparse.BooleanOptionalAction, default=True, help="Train the cross pairs too."
    )
    parser.add_argument("--eta-high", type=float, default=0.2, help="Policy Split's bonus (0.2: the bonus is on).")
    parser.add_argument("--completions-per-mode", default="half", choices=("half", "num_generations"))
    parser.add_argument("--cross-importance-sampling", default="none")
    parser.add_argument("--eta-high-target-kl", type=float, default=0.0, help="> 0: adapt eta_high to this KL.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train for ``--max-steps`` steps with a fixed global batch and dump the log history."""
    args = parse_args(argv)
    num_processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launcher; no state may exist before the config
    global_batch = args.questions * args.num_generations
    micro_batches = num_processes * args.gradient_accumulation_steps
    if global_batch % micro_batches != 0:
        raise ValueError(f"The global batch {global_batch} must split into {micro_batches} equal micro-batches.")
    output = Path(args.output)
    config_class, trainer_class = TRAINERS[args.trainer]
    shaping = {
        name: value
        for name, value in (
            ("asymmetric_advantages", args.asymmetric_advantages),
            ("perplexity_reallocation", args.perplexity_reallocation),
        )
        if value is not None
    }
    if args.trainer == "policy_split":
        shaping.update(
            share_rollouts=args.share_rollouts,
            entropy_estimator=args.entropy_estimator,
            eta_high=args.eta_high,
            completions_per_mode=args.completions_per_mode,
            cross_importance_sampling=args.cross_importance_sampling,
            eta_high_target_kl=args.eta_high_target_kl,
        )
    config = config_class(
        output_dir=args.work_dir or str(output.parent / f"{output.stem}-trainer"),
        per_device_train_batch_size=global_batch // micro_batches,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_iterations=args.num_iterations,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        max_steps=args.max_steps,
        learning_rate=1e-2,
        beta=args.beta,
        reward_range=[0.0, 2.0],  # the sum of the two rewards below
        **shaping,
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
    trainer = trainer_class(
        model=model,
        reward_funcs=[digit_reward, char_diversity_reward],
        args=config,
        train_dataset=conversational_dataset(16),
        processing_class=tokenizer,
    )
    trainer.train()
    if args.save_dir:
        trainer.save_model(args.save_dir)  # collective under ZeRO-3: every process calls it
    if args.queue_dir:
        queue = trainer.perplexity_queue
        threshold, valid = queue.threshold()
        state = {key: [values.tolist() for values in part] for key, part in queue.state_dict().items()}
        path = Path(args.queue_dir) / f"queue_rank{trainer.accelerator.process_index}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        eta_high = getattr(trainer, "eta_high", None)  # Policy Split's (adapted) coefficient on this process
        path.write_text(json.dumps({**state, "threshold": threshold, "valid": valid, "eta_high": eta_high}))
    if trainer.accelerator.is_main_process:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(trainer.state.log_history, indent=1))
        if args.run_info:
            Path(args.run_info).write_text(json.dumps(run_info(trainer), indent=1))
    trainer.accelerator.wait_for_everyone()
    distributed = trainer.accelerator.num_processes > 1
    trainer.accelerator.end_training()
    if distributed:
        # Skip interpreter finalization: DeepSpeed keeps gloo process groups alive past destroy_process_group, and a
        # gloo worker thread that frees finished async work (ZeRO-3's all-gathers hold Python tensors) during
        # Py_Finalize aborts the process ("terminate called without an active exception"; pytorch/pytorch#190489).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
