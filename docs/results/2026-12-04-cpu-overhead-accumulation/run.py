"""Is Policy Split's time above its floor the gradient accumulation it runs, rather than work of its own?

    python run.py OUT_DIR [--rounds 3] [--steps 3]

At the defaults Policy Split keeps GRPO's micro-batch (8 rows) by running two loss micro-batches per optimizer step
where TRL's GRPO runs one: it accumulates gradients between them, and its optimizer batch is two backward passes.
On 2026-12-04 its later steps' loss phase was slower than its first (warm-up) step's, which was at the floor. Each
round runs, every one in its own process with the overhead benchmark's settings and worker (`benchmarks/overhead.py`):

- ``grpo``: TRL's GRPO as the benchmark runs it (8 rows, one micro-batch a step);
- ``grpo_ga2``: TRL's GRPO with the same generation batch in two micro-batches of 4 rows (gradient accumulation,
  as in Policy Split, with half its rows);
- ``grpo_rows2``: TRL's GRPO with two micro-batches of 8 rows (Policy Split's micro-batch count and row count; it
  generates twice as many completions);
- ``policy_split``: the defaults (two micro-batches of 8 rows: 4 completions under both prompts);
- ``policy_split_doubled_micro_batch``: the benchmark's own run, ``keep_grpo_micro_batch=False`` (one micro-batch
  of 16 rows, no accumulation).

The order of the five is rotated round by round. Each finished run is saved as OUT_DIR/NNN-name.json and a re-run
skips it (resumable); `report.json` is the benchmark's report (floor ratios for the Policy Split runs against
``grpo``) and `analysis.json` the per-step loss phases and the paired comparisons (`analyze.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXTRA_RUNS = {
    "grpo_ga2": ("grpo", {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}),
    "grpo_rows2": ("grpo", {"gradient_accumulation_steps": 2}),
}
NAMES = ("grpo", "grpo_ga2", "grpo_rows2", "policy_split", "policy_split_doubled_micro_batch")


def register(overhead) -> None:
    """Add the study's GRPO variants to the benchmark's runs (the worker looks its run up by name)."""
    overhead.RUNS.update(EXTRA_RUNS)


def worker(name: str, settings: str, result_path: str) -> None:
    import benchmarks.overhead as overhead

    register(overhead)
    overhead.run_worker(name, json.loads(settings), result_path)


def main() -> None:
    sys.path.insert(0, str(REPO))
    import benchmarks.overhead as overhead
    from benchmarks.common import subprocess_env
    from trl_policysplit.tools.cli import resolve_model

    register(overhead)
    out, options = overhead.study_options(sys.argv, steps=3)
    settings = overhead.worker_settings(options, resolve_model(options["model"]))
    order = [name for r in range(options["rounds"]) for name in overhead.rotated(NAMES, r)]
    runs = []
    for index, name in enumerate(order):
        stem = out / f"{index:03d}-{name}"
        result = stem.with_suffix(".json")
        if not result.exists():
            env = subprocess_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            command = [sys.executable, __file__, "_worker", name, json.dumps(settings), f"{stem}.tmp"]
            with stem.with_suffix(".log").open("w") as log:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            if done.returncode:
                raise SystemExit(f"{name} failed, see {stem}.log")
            Path(f"{stem}.tmp").rename(result)
        run = {**json.loads(result.read_text()), "index": index}
        runs.append(run)
        print(
            f"run {index + 1}/{len(order)} {name}: steps {[round(s['step_s'], 1) for s in run['steps']]} "
            f"loss {[round(s['loss_s'], 1) for s in run['steps']]}",
            flush=True,
        )
    floor_runs = ["policy_split", "policy_split_doubled_micro_batch"]
    report = {"settings": settings, **overhead.build_report(runs, [*floor_runs, "grpo_ga2", "grpo_rows2"])}
    (out / "report.json").write_text(json.dumps({**report, "runs": runs}, indent=1, default=str) + "\n")
    print(overhead.format_table(report, list(NAMES)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        sys.path.insert(0, str(REPO))
        worker(*sys.argv[2:5])
    else:
        main()
