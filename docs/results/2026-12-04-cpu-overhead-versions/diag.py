"""Where Policy Split's loss time goes after its first step: one run per variant, per-step phases and page faults.

    python diag.py OUT_DIR VARIANT [VARIANT ...]

Variants: ps (the package as it is), ps_trim_step (plus a heap trim at every step's end, by a callback),
grpo (TRL's GRPO), grpo_ga2 (GRPO with 2 micro-batches of 4 rows, as Policy Split runs its 16 rows).
Each run: 1 warm-up + 3 measured steps, 64 tokens, 1 thread, its own process (resumable: a finished variant is kept).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

MAIN = Path("/work/main")


def worker(variant: str, result_path: str) -> None:
    sys.path.insert(0, str(MAIN))
    from transformers import TrainerCallback

    import benchmarks.overhead as overhead
    from trl_policysplit.memory import release_free_heap
    from trl_policysplit.tools.cli import resolve_model

    settings = {
        "model_path": resolve_model("smollm2-135m-instruct"),
        "device": "cpu",
        "dtype": "float32",
        "num_generations": 4,
        "questions_per_step": 2,
        "gradient_accumulation_steps": 1,
        "threads": 1,
        "max_completion_length": 64,
        "fixed_length": True,
        "vllm": None,
        "seed": 0,
        "warmup": 1,
        "steps": 3,
    }
    name = "grpo" if variant.startswith("grpo") else "policy_split"
    if variant == "grpo_ga2":
        settings.update(questions_per_step=1, gradient_accumulation_steps=2)

    class Faults(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict] = []

        def on_step_begin(self, args, state, control, **kwargs):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.start = (usage.ru_minflt, usage.ru_majflt)

        def on_step_end(self, args, state, control, **kwargs):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.steps.append(
                {"minor_faults": usage.ru_minflt - self.start[0], "major_faults": usage.ru_majflt - self.start[1]}
            )
            if variant == "ps_trim_step":
                release_free_heap()

    cycle, warmup_steps, _ = overhead.run_schedule(name, settings)
    recorder = overhead.step_recorder(cycle, warmup_steps, False, "forwards")
    faults = Faults()
    trainer = overhead.build_trainer(name, settings, result_path + "-out", [recorder, faults])
    trainer.train()
    steps = [{**s, **f} for s, f in zip(recorder.steps, faults.steps, strict=True)]
    Path(result_path).write_text(json.dumps({"variant": variant, "steps": steps, "memory": recorder.memory}, indent=1))


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for variant in sys.argv[2:]:
        result = out / f"{variant}.json"
        if result.exists():
            continue
        env = {**os.environ, "PYTHONPATH": str(MAIN), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        with (out / f"{variant}.log").open("w") as log:
            subprocess.run(
                [sys.executable, __file__, "_worker", variant, str(result)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=out,
                check=True,
            )
        for step in json.loads(result.read_text())["steps"]:
            print(variant, {k: round(v, 2) if isinstance(v, float) else v for k, v in step.items()}, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "_worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
