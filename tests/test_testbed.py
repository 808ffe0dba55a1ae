"""The exploration testbed: its statistics and task by hand, its claims on made-up runs, and a --quick smoke run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import stats, testbed
from benchmarks import testbed_task as task

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------------------
# Statistics


def test_mean_ci_is_the_student_t_interval():
    ci = stats.mean_ci([1.0, 2.0, 3.0])  # mean 2, sample std 1, t_{0.975, 2} = 4.303
    assert ci["mean"] == 2.0 and ci["n"] == 3
    assert ci["ci_low"] == pytest.approx(2.0 - 4.303 / math.sqrt(3))
    assert ci["ci_high"] == pytest.approx(2.0 + 4.303 / math.sqrt(3))
    assert stats.mean_ci([5.0, None, math.nan])["ci_low"] == -math.inf  # one value: no spread known
    assert stats.mean_ci([])["mean"] is None


def test_intervals_of_probabilities_and_counts_are_clipped_to_their_range():
    # Two seeds, pass@1 0.0 and 0.2: the t interval is 0.1 +- 12.706 * 0.1414 / sqrt(2) = [-1.17, 1.37].
    ci = stats.mean_ci([0.0, 0.2], bounds=(0.0, 1.0))
    assert ci["mean"] == pytest.approx(0.1) and (ci["ci_low"], ci["ci_high"]) == (0.0, 1.0) and ci["clipped"]
    assert stats.mean_ci([0.4, 0.5, 0.6], bounds=(0.0, 1.0))["clipped"] is False
    assert stats.mean_ci([3.0], bounds=(0.0, math.inf))["ci_low"] == 0.0  # one seed: the range itself
    assert testbed.metric_range("normal/pass@4") == (0.0, 1.0) and testbed.metric_range("train/frac_reward_zero_std")
    assert testbed.metric_range("high_entropy/distinct_correct") == (0.0, math.inf)
    assert testbed.metric_range("kl_normal_to_high_entropy") is None and testbed.metric_range("entropy_ratio") is None
    assert stats.t_quantile(11) == 2.228  # between table entries: the smaller df's (wider) quantile


def test_paired_differences_use_the_seeds_both_have():
    diff = stats.paired({0: 0.5, 1: 0.7, 2: 0.9, 3: 1.0}, {0: 0.4, 1: 0.5, 2: 0.6})
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("low", "high", "above", "below"),
    [
        (0.1, 0.3, stats.HOLDS, stats.FAILS),
        (-0.3, -0.1, stats.FAILS, stats.HOLDS),
        (-0.1, 0.1, "inconclusive", "inconclusive"),
    ],
)
def test_verdicts_need_the_interval_to_exclude_the_opposite(low, high, above, below):
    ci = {"mean": (low + high) / 2, "ci_low": low, "ci_high": high}
    assert stats.verdict_above(ci) == above
    assert stats.verdict_below(ci) == below


def test_non_inferiority_allows_the_margin():
    ci = {"mean": -0.01, "ci_low": -0.015, "ci_high": -0.005}
    assert stats.verdict_not_below(ci, 0.02) == stats.HOLDS
    assert stats.verdict_above(ci) == stats.FAILS
    assert stats.verdict_not_below({"mean": -0.05, "ci_low": -0.06, "ci_high": -0.04}, 0.02) == stats.FAILS


# ---------------------------------------------------------------------------------------------------------------
# Task


def test_solution_counts_by_hand():
    assert task.count_solutions(45, 0) == 1  # 9 9 9 9 9
    assert task.count_solutions(45, 9) == 0
    assert task.count_solutions(0, 1) == 1 and task.count_solutions(0, 0) == 0
    assert task.count_solutions(1, 3) == 5  # the 1 in any of five places
    assert max(task.count_solutions(t, 5) for t in range(46)) > 1000  # many answers in the middle


def test_splits_are_disjoint_fixed_and_large_enough():
    first, again = task.splits(), task.splits()
    assert first == again
    sets = {name: set(prompts) for name, prompts in first.items()}
    assert not (sets["train"] & sets["test"]) and not (sets["validation"] & sets["test"])
    assert len(sets["test"]) >= 200 and len(sets["validation"]) >= 40
    assert all(task.count_solutions(t, f) > 0 for t, f in first["test"])


def test_reward_checks_format_forbidden_digit_and_sum():
    rewards = task.sum_reward(["9 1 0 0 0", "9 1 0 0", "5 5 0 0 0", "9 1 0 0 0 0", "9 x 0 0 1"], [10] * 5, [5] * 5)
    assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_tokenizer_round_trips_prompts_and_answers():
    tokenizer = task.build_tokenizer()
    ids = tokenizer(f"{task.INSTRUCTION}\n\n{task.prompt_text(23, 4)}")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["vary", "sum", "T23", "no", "4", ":"]
    answer = tokenizer("3 5 7 0 8")["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(answer, skip_special_tokens=True) == "3 5 7 0 8"


# ---------------------------------------------------------------------------------------------------------------
# Claims on made-up runs


def _result(
    method: str,
    seed: int,
    pass1: float,
    distinct: float,
    kl_curve=(),
    none=0.5,
    zero_std=0.5,
    ratio=1.0,
    held_out_kl=0.1,
    pass16=None,
):
    passes = {str(k): min(1.0, pass1 * k**0.5) for k in testbed.KS}
    if pass16 is not None:
        passes["16"] = pass16
    mode = {"pass@k": passes, "distinct_correct": distinct, "entropy": 1.0, "frac_solved_none": 0.1}
    mode["frac_solved_all"] = 0.0
    high = {**mode, "entropy": ratio}
    series = {
        "advantage/frac_groups_solved_none": [[1, none], [2, none]],
        "frac_reward_zero_std": [[1, zero_std], [2, zero_std]],
        "policy_split/kl_high_entropy_to_normal": [[i + 1, v] for i, v in enumerate(kl_curve)],
    }
    return {
        "method": method,
        "seed": seed,
        "steps": 2,
        "wall_s": 1.0,
        "train_s": 1.0,
        "series": series,
        "eval": {
            "normal": mode,
            "high_entropy": high,
            "kl_normal_to_high_entropy": 0.1,
            "kl_high_entropy_to_normal": held_out_kl,
        },
    }


def test_claims_follow_the_confidence_intervals():
    kl = [0.01] * 5 + [0.02, 0.15, 0.18, 0.2, 0.19, 0.21, 0.2, 0.19, 0.21, 0.2, 0.2, 0.21, 0.2, 0.19, 0.2]
    results = []
    for seed in range(4):
        jitter = 0.001 * seed
        results.append(_result("grpo", seed, 0.10 + jitter, 1.0 + jitter, none=0.5, zero_std=0.5))
        results.append(_result("policy_split", seed, 0.10 + jitter, 1.6 + jitter, kl_curve=kl, ratio=1.5 + jitter))
        results.append(_result("asym_grpo", seed, 0.1, 1.0, none=0.40 + jitter))
        results.append(_result("dipo", seed, 0.1, 1.0, zero_std=0.55 + jitter))
    claims = {c["claim"]: c["verdict"] for c in testbed.decide_claims(testbed.aggregate(results))}
    by_start = {claim.split(":", 1)[0] + ":" + claim.split(":", 1)[1][:30]: v for claim, v in claims.items()}
    assert claims["policy_split: held-out HE-mode token entropy >= 1.3x the normal mode's"] == "holds"
    assert any(v == "holds" for k, v in by_start.items() if "inter-mode KL" in k)
    assert claims["policy_split: normal-mode pass@1 not below GRPO (margin 0.02)"] == "holds"
    assert claims["policy_split: normal-mode distinct correct answers per prompt above GRPO"] == "holds"
    assert claims["policy_split: normal-mode pass@16 above GRPO"] == "inconclusive"  # identical pass@16: CI is 0
    assert claims["asym_grpo: fewer training groups solved by none than GRPO"] == "holds"
    assert claims["dipo: fewer zero-variance training groups than GRPO"] == "fails"  # more, not fewer


def test_a_kl_that_runs_away_fails_the_band_claim_and_counts_its_seeds():
    runaway = [0.01] * 5 + [0.02, 0.5, 0.55, 0.6, 0.58, 0.62, 0.6, 0.59, 0.61, 0.6, 0.6, 0.61, 0.6, 0.59, 0.6]
    results = [_result("policy_split", seed, 0.1, 1.0, kl_curve=runaway, held_out_kl=0.7) for seed in range(4)]
    claims = [c for c in testbed.decide_claims(testbed.aggregate(results)) if "inter-mode KL" in c["claim"]]
    assert len(claims) == 1 and claims[0]["verdict"] == "fails"  # a 60x rise, but out of the band
    evidence = claims[0]["evidence"]
    assert evidence["growth"]["ci_low"] > testbed.KL_GROWTH
    assert evidence["runaway_seeds_training"] == 4 and evidence["runaway_seeds_held_out"] == 4


# ---------------------------------------------------------------------------------------------------------------
# The ablation: budgets, matched GRPO runs and the rule that picks the defaults


def test_every_variant_is_paired_with_grpo_at_its_budget():
    available = ["untrained", *testbed.SWEEP]
    assert testbed.budget("policy_split_eta0.2") == {"samples": 8, "updates": 1, "beta": 0.0}
    assert testbed.budget("policy_split_pm8") == {"samples": 16, "updates": 1, "beta": 0.0}  # 8 per mode
    assert testbed.budget("policy_split_authors") == {"samples": 16, "updates": 4, "beta": 0.0}
    expected = {
        "policy_split": "grpo",  # the test split's method: the package defaults
        "policy_split_eta0.2": "grpo",
        "policy_split_is_kl": "grpo",
        "policy_split_u4": "grpo_u4",
        "policy_split_kl_pm8": "grpo_g16",
        "policy_split_is_kl_authors": "grpo_g16_u4",
        "policy_split_beta0.04": "grpo_beta0.04",
    }
    assert {method: testbed.matched_grpo(method, available) for method in expected} == expected
    for method in testbed.SWEEP:
        if testbed.method_settings(method)[0] == "policy_split":
            assert testbed.matched_grpo(method, available), method  # the sweep runs every variant's control


def _ablation(specs):
    results = []
    for seed in range(4):
        jitter = 0.001 * seed
        for method, (pass1, pass16, kl) in specs.items():
            held_out = kl if not callable(kl) else kl(seed)
            results.append(_result(method, seed, pass1 + jitter, 1.0, held_out_kl=held_out, pass16=pass16 + jitter))
    return testbed.ablation_rows(testbed.aggregate(results))


def test_the_rule_picks_the_best_steady_variant_and_prefers_the_cheaper_one_on_a_near_tie():
    rows = _ablation(
        {
            "grpo": (0.10, 0.60, 0.01),
            "grpo_g16": (0.11, 0.62, 0.01),
            "policy_split_eta0.2": (0.10, 0.70, lambda seed: 0.8 if seed == 0 else 0.1),  # one drifting seed
            "policy_split_is": (0.10, 0.64, 0.1),  # +0.04 pass@16 against grpo
            "policy_split_kl": (0.10, 0.645, 0.1),  # +0.045, the best
            "policy_split_kl_pm8": (0.11, 0.672, 0.1),  # +0.052 against grpo_g16, but 2x samples: within 0.01
            "policy_split_eta0": (0.05, 0.80, 0.0),  # pass@1 below GRPO: not eligible
            "policy_split_beta0.04": (0.10, 0.90, 0.1),  # a reference model: never a candidate
        }
    )
    by_method = {row["method"]: row for row in rows}
    reference = by_method["policy_split_eta0.2"]
    assert reference["drifting_seeds"] == 1 and reference["seeds"] == 4
    assert by_method["policy_split_kl_pm8"]["matched_grpo"] == "grpo_g16"
    assert by_method["policy_split_kl"]["vs_grpo/normal/pass@16"]["mean"] == pytest.approx(0.045)
    selection = testbed.select_defaults(rows)
    assert set(selection["eligible"]) == {"policy_split_is", "policy_split_kl", "policy_split_kl_pm8"}
    assert selection["chosen"] == "policy_split_kl"  # the 2x-sample variant is within 0.01: the cheaper one wins


def test_the_rule_falls_back_to_the_steady_variant_with_the_best_pass1_bound():
    rows = _ablation(
        {
            "grpo": (0.10, 0.60, 0.01),
            "policy_split_eta0.2": (0.10, 0.60, 0.9),
            "policy_split_is": (0.05, 0.60, 0.1),
            "policy_split_kl": (0.07, 0.60, 0.1),
        }
    )
    selection = testbed.select_defaults(rows)
    assert selection["eligible"] == [] and selection["chosen"] == "policy_split_kl"


# ---------------------------------------------------------------------------------------------------------------
# The command, end to end


@pytest.mark.slow
def test_quick_testbed_writes_a_report_of_the_promised_shape(tmp_path):
    output = tmp_path / "testbed"
    command = [
        sys.executable,
        str(REPO / "scripts" / "benchmark.py"),
        "testbed",
        "--quick",
        "--output",
        str(output),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    quick = testbed.QUICK
    total = (len(quick["methods"]) + 1) * quick["seeds"]  # every method and the warm start, per seed
    progress = completed.stdout.splitlines()
    done = [i for i, line in enumerate(progress) if " done: " in line]
    announced = [i for i, line in enumerate(progress) if line.startswith(f"[testbed] {total} runs to go")]
    assert announced and done and announced[0] < done[0] and "warm starts" in progress[announced[0]]  # said first
    counts = sorted(int(progress[i].split("/")[0].rsplit(" ", 1)[1]) for i in done)
    assert counts == list(range(1, total + 1)) and all(f"/{total} done: " in progress[i] for i in done)
    report = json.loads((output / "testbed.json").read_text())
    assert set(report) >= {"config", "runs", "methods", "claims", "paired_against_grpo"}
    assert report["config"]["seeds"] == quick["seeds"] and report["config"]["steps"] == quick["steps"]
    trained = [run for run in report["runs"] if run["method"] != "untrained"]
    assert len(trained) == len(quick["methods"]) * quick["seeds"]
    assert {run["method"] for run in trained} == set(quick["methods"])
    for run in report["runs"]:
        assert {"method", "seed", "steps", "wall_s"} <= set(run)
    for method in quick["methods"]:  # probabilities' intervals inside [0, 1]
        entry = report["methods"][method]["normal/pass@1"]
        assert 0.0 <= entry["ci_low"] <= entry["mean"] <= entry["ci_high"] <= 1.0
    for method in quick["methods"]:
        for metric in ("normal/pass@1", "normal/pass@16", "high_entropy/entropy", "kl_high_entropy_to_normal"):
            entry = report["methods"][method][metric]
            assert set(entry) >= {"mean", "ci_low", "ci_high"} and 0 <= entry["mean"] or "kl" in metric
    for claim in report["claims"]:
        assert claim["verdict"] in {"holds", "fails", "inconclusive"} and claim["evidence"]
    assert (output / "testbed.md").read_text().startswith("# Exploration testbed")
    assert (output / "testbed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second call finds every run finished and only re-aggregates.
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0 and "finished runs found" in again.stdout


def test_a_validation_report_holds_the_ablation_table_and_the_chosen_defaults():
    results = []
    for seed in range(3):
        jitter = 0.001 * seed
        results.append(_result("grpo", seed, 0.10 + jitter, 1.0, held_out_kl=0.01))
        results.append(_result("policy_split_eta0.2", seed, 0.08 + jitter, 1.0, held_out_kl=0.9))
        results.append(_result("policy_split_is", seed, 0.10 + jitter, 1.2, held_out_kl=0.1))
    config = {**testbed.DEFAULTS, "seeds": 3, "methods": ["grpo", "policy_split_eta0.2", "policy_split_is"]}
    extra = {"eval_split": "validation", "paired_baseline": "policy_split_eta0.2", "machine": "m", "wall_s": 1.0}
    extra |= {"runs_executed": 0, "runs_wall_s_total": 1.0, "eval_prompts": 44}
    report = testbed.build_report(results, config, extra)
    assert report["selection"]["chosen"] == "policy_split_is" and report["selection"]["eligible"] == [
        "policy_split_is"
    ]
    rows = {row["method"]: row for row in report["ablation"]}
    assert rows["policy_split_eta0.2"]["drifting_seeds"] == 3 and rows["policy_split_is"]["drifting_seeds"] == 0
    assert rows["policy_split_is"]["vs_defaults/normal/pass@1"]["mean"] == pytest.approx(0.02)
    markdown = testbed.format_markdown(report)
    assert "| policy_split_is | grpo |" in markdown and "Chosen: **policy_split_is**" in markdown
    assert "3/3" in markdown  # the defaults' drifting seeds


def test_compare_finds_identical_runs_and_the_largest_difference(tmp_path):
    def store(folder: str, name: str, loss: list, pass1: float | None) -> None:
        runs = tmp_path / folder / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        record = {"method": name, "series": {"loss": loss}, "eval": {"normal": {"pass@k": {"1": pass1}}}, "wall_s": 3}
        (runs / f"{name}-seed0.json").write_text(json.dumps(record))

    store("before", "grpo", [1.0, 0.5], 0.25)
    store("after", "grpo", [1.0, 0.5], 0.25)
    store("before", "policy_split", [1.0, 0.5], None)
    store("after", "policy_split", [1.0, 0.75], None)
    store("before", "dipo", [1.0], 0.1)
    comparison = testbed.compare_run_dirs(tmp_path / "before", tmp_path / "after")
    assert comparison["identical"] == ["grpo-seed0"]
    split = comparison["runs"]["policy_split-seed0"]
    assert split["series"] == {"identical": False, "numbers": 2, "max_abs_difference": 0.25, "where": "loss.1"}
    assert split["eval"]["identical"] is True  # None on both sides is the same number
    assert comparison["only_before"] == ["dipo-seed0"] and comparison["only_after"] == []
    table = testbed.format_comparison(comparison)
    assert "| policy_split-seed0 | differs: max 0.25 at loss.1 |" in table and "1 of 2 runs identical." in table
