"""Policy Split's cost over its floor with PyTorch's default CPU allocation and with transparent huge pages.

    python run.py OUT_DIR [--rounds 3] [--steps 2]

The question: is the time Policy Split spends above its floor on this machine work of ours, or the kernel faulting
in freshly mapped 4 KiB pages (glibc maps each large tensor anew and unmaps it when freed)? Each condition runs
GRPO (TRL's class) then Policy Split (the defaults) with the overhead benchmark's own settings and worker; the
conditions differ only in the workers' environment: `default`, or `thp` (``THP_MEM_ALLOC_ENABLE=1``: PyTorch asks
the kernel for 2 MiB pages for tensors of 2 MiB and more, 512 times fewer faults). The conditions' order is rotated
round by round. Every run is its own process; each finished run is saved as OUT_DIR/NNN-name@condition.json and a
re-run skips it (resumable). `report-<condition>.json` is the benchmark's report per condition.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONDITIONS = {"default": {}, "thp": {"THP_MEM_ALLOC_ENABLE": "1"}}
TRAINERS = ("grpo", "policy_split")


def main() -> None:
    sys.path.insert(0, str(REPO))
    import benchmarks.overhead as overhead
    from benchmarks.common import subprocess_env
    from trl_policysplit.tools.cli import resolve_model

    out, options = overhead.study_options(sys.argv, steps=2)
    rounds = options["rounds"]
    settings = overhead.worker_settings(options, resolve_model(options["model"]))
    names = list(CONDITIONS)
    order = []
    for r in range(rounds):
        order += [(t, c) for c in overhead.rotated(names, r) for t in TRAINERS]
    runs: dict[str, list] = {c: [] for c in names}
    for index, (trainer, condition) in enumerate(order):
        stem = out / f"{index:03d}-{trainer}@{condition}"
        result = stem.with_suffix(".json")
        if not result.exists():
            env = subprocess_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **CONDITIONS[condition])
            if not CONDITIONS[condition]:  # the default: whatever this shell set is not inherited
                env.pop("THP_MEM_ALLOC_ENABLE", None)
            command = [sys.executable, "-m", "benchmarks.overhead", "_worker", trainer, json.dumps(settings)]
            with stem.with_suffix(".log").open("w") as log:
                done = subprocess.run(
                    [*command, f"{stem}.tmp"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
                )
            if done.returncode:
                raise SystemExit(f"{trainer}@{condition} failed, see {stem}.log")
            Path(f"{stem}.tmp").rename(result)
        run = {**json.loads(result.read_text()), "index": index, "condition": condition}
        runs[condition].append(run)
        print(
            f"run {index + 1}/{len(order)} {trainer}@{condition}: "
            f"steps {[s['step_s'] for s in run['steps'] if not s['warmup']]}",
            flush=True,
        )
    for condition in names:
        report = {
            "settings": settings,
            "condition": condition,
            "environment": CONDITIONS[condition],
            **overhead.build_report(runs[condition], ["policy_split"]),
            "runs": runs[condition],
        }
        (out / f"report-{condition}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"\n{condition}:\n{overhead.format_table(report, ['grpo', 'policy_split'])}")


if __name__ == "__main__":
    main()
