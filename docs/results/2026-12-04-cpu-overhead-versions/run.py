"""Policy Split's cost at three commits of the package, measured in one session by the overhead benchmark of main.

    VERSION_SET=versions python run.py OUT_DIR [--rounds 3] [--steps 2]   # or VERSION_SET=skip

Each round runs TRL's GRPO once, then Policy Split with the package of each commit (order rotated round by round).
Every run is its own process; the package is taken from a checkout of that commit (`VERSIONS`), the measurement code
(`benchmarks/overhead.py`: phases through public hooks) always from main. The functional-core timing after training
is skipped: the older package lacks some of the step functions it times, and it does not enter the step times.
Each finished run is saved as OUT_DIR/NNN-name.json; a re-run skips those (resumable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MAIN = Path(__file__).resolve().parents[3]
# PACKAGES/<version>/trl_policysplit -> that checkout's package
PACKAGES = Path(os.environ.get("PACKAGES", "/work/wt/pkg"))
VERSION_SETS = {
    "versions": {
        "policy_split@3ee7f53": "pre-refactor",  # before issue 23's refactor
        "policy_split@c72729c": "pre-trim",  # after the refactor, before the heap trim
        "policy_split@main": "main",
    },
    "skip": {
        "policy_split@scored": "main",  # main before the skipped scoring forward: the cross pairs scored at defaults
        "policy_split@skip": "skip",  # the scoring forward skipped when nothing reads it
    },
}
VERSIONS = VERSION_SETS[os.environ.get("VERSION_SET", "versions")]


def patch(overhead) -> None:
    for name in VERSIONS:
        overhead.RUNS[name] = ("policy_split", {})
    overhead.FLOOR_RUNS = (*overhead.FLOOR_RUNS, *VERSIONS)
    overhead.time_functional_core = lambda *a, **k: {"seconds_per_generation_batch": 0.0, "skipped": True}


def worker(name: str, settings: str, result_path: str) -> None:
    import benchmarks.overhead as overhead

    patch(overhead)
    overhead.run_worker(name, json.loads(settings), result_path)


def main() -> None:
    sys.path.insert(0, str(MAIN))
    import benchmarks.overhead as overhead
    from trl_policysplit.tools.cli import resolve_model

    patch(overhead)
    out, options = overhead.study_options(sys.argv, steps=2)
    rounds = options["rounds"]
    settings = overhead.worker_settings(options, resolve_model(options["model"]))
    names = list(VERSIONS)
    order = []
    for r in range(rounds):
        order += ["grpo", *overhead.rotated(names, r)]
    runs = []
    for index, name in enumerate(order):
        result = out / f"{index:03d}-{name}.json"
        if not result.exists():
            version = VERSIONS.get(name, "main")
            env = {
                **os.environ,
                "PYTHONPATH": f"{PACKAGES / version}:{MAIN}",
                "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
            command = [sys.executable, __file__, "_worker", name, json.dumps(settings), str(result) + ".tmp"]
            with (out / f"{index:03d}-{name}.log").open("w") as log:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
            if done.returncode:
                raise SystemExit(f"{name} failed, see {out}/{index:03d}-{name}.log")
            Path(str(result) + ".tmp").rename(result)
        run = {**json.loads(result.read_text()), "index": index, "round": index // (1 + len(names))}
        runs.append(run)
        steps_s = [s["step_s"] for s in run["steps"] if not s["warmup"]]
        print(f"run {index + 1}/{len(order)} {name}: steps {steps_s}", flush=True)
    report = {
        "settings": settings,
        "order": order,
        "versions": VERSIONS,
        **overhead.build_report(runs, names),
        "runs": runs,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(overhead.format_table(report, names))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(*sys.argv[2:])
    else:
        main()
