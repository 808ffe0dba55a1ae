"""Per-round comparison of `run.py`'s five runs: how each loss phase compares with what its padded tokens predict,
how it grows after the first (warm-up) step, and Policy Split's floor ratio against GRPO with and without gradient
accumulation (mean, 95 % t-interval over rounds).

    python analyze.py OUT_DIR        # writes OUT_DIR/analysis.json and prints the tables
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.overhead import cost_floor, summarize  # noqa: E402
from benchmarks.stats import mean_ci, print_intervals  # noqa: E402

NAMES = ("grpo", "grpo_ga2", "grpo_rows2", "policy_split", "policy_split_doubled_micro_batch")
POLICY_SPLIT = ("policy_split", "policy_split_doubled_micro_batch")


def interval(values: list[float]) -> dict[str, object]:
    ci = mean_ci(values)
    return {"values": values, "mean": ci["mean"], "ci95": [ci["ci_low"], ci["ci_high"]]}


def main() -> None:
    out = Path(sys.argv[1])
    runs = json.loads((out / "report.json").read_text())["runs"]
    per_round = []
    for r in sorted({run["index"] // len(NAMES) for run in runs}):
        here = {run["name"]: run for run in runs if run["index"] // len(NAMES) == r}
        if set(here) != set(NAMES):
            continue  # an unfinished round (partial results)
        summaries = {name: summarize([run]) for name, run in here.items()}
        grpo = summaries["grpo"]
        row: dict[str, object] = {"round": r + 1}
        for name in NAMES:
            s = summaries[name]
            steps = here[name]["steps"]
            first = next(step["loss_s"] for step in steps if step["warmup"])
            later = statistics.fmean(step["loss_s"] for step in steps if not step["warmup"])
            tokens = s["loss_tokens"] / grpo["loss_tokens"]
            entry = {
                "step_s": s["step_time_s"],
                "step_ratio": s["step_time_s"] / grpo["step_time_s"],
                "loss_s_per_step": [step["loss_s"] for step in steps],
                "loss_ratio": s["phases"]["loss_s"] / grpo["phases"]["loss_s"],
                "loss_token_ratio": tokens,
                # 1.0: the loss phase costs what GRPO's costs per padded token.
                "loss_per_token_ratio": s["phases"]["loss_s"] / grpo["phases"]["loss_s"] / tokens,
                "loss_growth_after_first_step": later / first,
                "peak_memory_ratio": s["peak_memory_mb"] / grpo["peak_memory_mb"],
                "phases": s["phases"],
            }
            if name in POLICY_SPLIT:
                entry["floor"] = cost_floor(s, grpo)
                # The same floor with GRPO run as Policy Split runs it at the defaults: two micro-batches.
                entry["floor_against_grpo_ga2"] = cost_floor(s, summaries["grpo_ga2"])
            row[name] = entry
        per_round.append(row)

    def across(name: str, key: str, sub: str | None = None) -> dict[str, object]:
        return interval([row[name][key][sub] if sub else row[name][key] for row in per_round])

    summary = {
        name: {
            key: across(name, key)
            for key in ("step_ratio", "loss_ratio", "loss_per_token_ratio", "loss_growth_after_first_step")
        }
        for name in NAMES
    }
    for name in POLICY_SPLIT:
        summary[name]["floor_ratio"] = across(name, "floor", "floor_ratio")
        summary[name]["floor_ratio_against_grpo_ga2"] = across(name, "floor_against_grpo_ga2", "floor_ratio")
        summary[name]["peak_memory_ratio"] = across(name, "peak_memory_ratio")
    paired = {
        f"{a} - {b}: {key}": interval([row[a][key] - row[b][key] for row in per_round])
        for a, b, key in (
            ("policy_split", "grpo_rows2", "loss_per_token_ratio"),
            ("policy_split", "grpo_ga2", "loss_per_token_ratio"),
            ("policy_split", "policy_split_doubled_micro_batch", "loss_per_token_ratio"),
            ("grpo_ga2", "grpo", "loss_growth_after_first_step"),
            ("grpo_rows2", "grpo", "loss_growth_after_first_step"),
            ("policy_split", "grpo_rows2", "loss_growth_after_first_step"),
        )
    }
    (out / "analysis.json").write_text(
        json.dumps({"per_round": per_round, "summary": summary, "paired": paired}, indent=1) + "\n"
    )

    print("| round | run | step s | x GRPO | loss s per step | loss x GRPO | tokens x GRPO | loss/token x GRPO |")
    print("|---|---|---|---|---|---|---|---|")
    for row in per_round:
        for name in NAMES:
            e = row[name]
            steps = ", ".join(f"{x:.1f}" for x in e["loss_s_per_step"])
            print(
                f"| {row['round']} | {name} | {e['step_s']:.1f} | {e['step_ratio']:.3f} | {steps} | "
                f"{e['loss_ratio']:.3f} | {e['loss_token_ratio']:.3f} | {e['loss_per_token_ratio']:.3f} |"
            )
    print()
    print_intervals(summary, paired)


if __name__ == "__main__":
    main()
