"""Per-round comparison of the three package versions in `run.py`'s output: step time, floor ratio, where the time
above the floor goes, and paired differences between versions (mean, 95 % t-interval over rounds).

    python analyze.py OUT_DIR        # writes OUT_DIR/analysis.json and prints a Markdown table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.overhead import cost_floor, summarize  # noqa: E402
from benchmarks.stats import mean_ci, print_intervals  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    report = json.loads((out / "report.json").read_text())
    VERSIONS = list(report["versions"])  # noqa: N806
    runs = report["runs"]
    rounds = sorted({run["round"] for run in runs})
    per_round = []
    for r in rounds:
        here = {run["name"]: run for run in runs if run["round"] == r}
        grpo = summarize([here["grpo"]])
        row = {"round": r + 1, "grpo_step_s": grpo["step_time_s"], "grpo": grpo, "versions": {}}
        for name in VERSIONS:
            ps = summarize([here[name]])
            floor = cost_floor(ps, grpo)
            # Seconds above the floor, by phase: what GRPO's phase times the floor's factor does not explain.
            tokens = floor["floor_inputs"]["loss_token_ratio"]
            excess = {
                "generation_s": ps["phases"]["generation_s"] - grpo["phases"]["generation_s"],
                "scoring_s": ps["phases"]["scoring_s"] - tokens * grpo["phases"]["scoring_s"],
                "loss_s": ps["phases"]["loss_s"] - tokens * grpo["phases"]["loss_s"],
                "other_s": ps["phases"]["other_s"] - tokens * grpo["phases"]["other_s"],
            }
            row["versions"][name] = {
                "step_s": ps["step_time_s"],
                "step_ratio": ps["step_time_s"] / grpo["step_time_s"],
                "position_in_round": next(i for i, run in enumerate(runs) if run is here[name]) % (1 + len(VERSIONS)),
                **floor,
                "phases": ps["phases"],
                "loss_phase_ratio": ps["phases"]["loss_s"] / grpo["phases"]["loss_s"],
                "excess_over_floor_s": excess,
                "peak_memory_mb": ps["peak_memory_mb"],
                "peak_memory_ratio": ps["peak_memory_mb"] / grpo["peak_memory_mb"],
            }
        per_round.append(row)

    def across(name: str, key: str) -> dict[str, float]:
        values = [row["versions"][name][key] for row in per_round]
        ci = mean_ci(values)
        return {"values": values, "mean": ci["mean"], "ci95": [ci["ci_low"], ci["ci_high"]]}

    summary = {
        name: {
            key: across(name, key) for key in ("step_ratio", "floor_ratio", "loss_phase_ratio", "peak_memory_ratio")
        }
        for name in VERSIONS
    }
    paired = {}
    for name in VERSIONS[1:]:
        for key in ("step_ratio", "floor_ratio"):
            diffs = [row["versions"][name][key] - row["versions"][VERSIONS[0]][key] for row in per_round]
            ci = mean_ci(diffs)
            paired[f"{name} - {VERSIONS[0]}: {key}"] = {
                "values": diffs,
                "mean": ci["mean"],
                "ci95": [ci["ci_low"], ci["ci_high"]],
            }
    if len(VERSIONS) > 2:
        diffs = [
            row["versions"][VERSIONS[2]]["step_ratio"] - row["versions"][VERSIONS[1]]["step_ratio"]
            for row in per_round
        ]
        ci = mean_ci(diffs)
        paired[f"{VERSIONS[2]} - {VERSIONS[1]}: step_ratio"] = {
            "values": diffs,
            "mean": ci["mean"],
            "ci95": [ci["ci_low"], ci["ci_high"]],
        }
    analysis = {"per_round": per_round, "summary": summary, "paired": paired}
    (out / "analysis.json").write_text(json.dumps(analysis, indent=1) + "\n")

    print(
        "| round | GRPO step s | version | step s | x GRPO | floor | x floor | loss x GRPO | scoring s | "
        "excess s (gen / score / loss / other) | peak x GRPO |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in per_round:
        for name in VERSIONS:
            v = row["versions"][name]
            e = v["excess_over_floor_s"]
            print(
                f"| {row['round']} | {row['grpo_step_s']:.1f} | {name.split('@')[1]} | {v['step_s']:.1f} | "
                f"{v['step_ratio']:.3f} | {v['floor']:.3f} | {v['floor_ratio']:.3f} | {v['loss_phase_ratio']:.3f} | "
                f"{v['phases']['scoring_s']:.2f} | {e['generation_s']:.2f} / {e['scoring_s']:.2f} / "
                f"{e['loss_s']:.2f} / {e['other_s']:.2f} | {v['peak_memory_ratio']:.3f} |"
            )
    print()
    print_intervals(summary, paired, with_values=True)


if __name__ == "__main__":
    main()
