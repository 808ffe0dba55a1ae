"""scripts/evaluate.py and trl_policysplit.tools.evaluation: metrics by hand, sampling on the tiny model, the CLI."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import conversational_dataset, digit_reward

from trl_policysplit.modes import DEFAULT_HIGH_ENTROPY_PROMPT, HIGH_ENTROPY, NORMAL, to_high_entropy
from trl_policysplit.tools import evaluation
from trl_policysplit.tools.cli import RUN_INFO_FILE, CLIError
from trl_policysplit.tools.evaluation import (
    EntropyRecorder,
    build_parser,
    build_prompts,
    compare_reports,
    completion_lengths,
    compute_mode_metrics,
    default_output,
    distinct_n,
    evaluate_model,
    format_table,
    metric_averaging,
    pass_at_k,
    resolve_settings,
    sample_completions,
    score_completions,
    token_entropies,
)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
INSTRUCTION = "Be unusual."
METRICS = ("pass@1", "mean_reward", "entropy", "distinct_correct", "distinct_1", "distinct_2", "mean_length")

# ----------------------------------------------------------------------------------------------------------------
# pass@k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 1, 0.25),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (4, 0, 1, 0.0),
        (4, 0, 4, 0.0),
        (4, 4, 1, 1.0),
        (4, 4, 4, 1.0),
        (5, 3, 3, 1.0),  # n - c = 2 < k: every draw of 3 holds a correct one
        (8, 2, 8, 1.0),
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(10, 3, 4), (16, 5, 8), (200, 10, 50), (100, 1, 1), (30, 29, 1)])
def test_pass_at_k_matches_the_combinatorial_formula(n, c, k):
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n_and_non_decreasing_in_k():
    values = [pass_at_k(1000, 3, k) for k in (1, 10, 100, 500, 997, 998)]
    assert values[0] == pytest.approx(0.003)
    assert all(0 <= v <= 1 for v in values) and values == sorted(values) and values[-1] == 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ----------------------------------------------------------------------------------------------------------------
# distinct-n


def test_distinct_n_counts_unique_over_all_ngrams_without_crossing_texts():
    texts = ["a b a", "a b"]
    assert distinct_n(texts, 1) == pytest.approx(2 / 5)  # a b a a b
    assert distinct_n(texts, 2) == pytest.approx(2 / 3)  # (a b) (b a) (a b); no (a a) across the texts


def test_distinct_n_splits_on_any_whitespace_and_handles_short_texts():
    assert distinct_n(["x\ny  z", " x  y "], 1) == pytest.approx(3 / 5)
    assert distinct_n(["one two three"], 3) == 1.0
    assert distinct_n(["single", ""], 2) == 0.0  # no bigram at all
    assert distinct_n([], 1) == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Per-mode metrics


def test_mode_metrics_on_a_hand_made_example():
    # 2 questions x 3 samples x 2 reward functions with weights (1, 0.25); correct: weighted sum > 0.5.
    rewards = [
        [[1, 1], [1, 0], [0, 1]],  # totals 1.25, 1.0, 0.25 -> correct, correct, wrong
        [[0, 0], [0, 1], [None, None]],  # totals 0, 0.25, NaN (no reward) -> all wrong
    ]
    rewards = np.array([[[np.nan if v is None else v for v in s] for s in q] for q in rewards])
    texts = [["x = 1", " x = 1\n", "y y"], ["a b", "c", ""]]
    entropies = [[[1.0, 2.0], [3.0], [0.5, 0.5]], [[1.0], [], [2.0]]]
    lengths = [[2, 1, 2], [1, 0, 1]]
    metrics = compute_mode_metrics(
        rewards,
        texts,
        entropies,
        lengths,
        ks=(1, 2, 3, 4),
        threshold=0.5,
        reward_weights=(1.0, 0.25),
        reward_names=("acc", "fmt"),
    )
    assert metrics == pytest.approx(
        {
            "pass@1": 2 / 6,
            "pass@2": (1.0 + 0.0) / 2,  # question 1: n=3, c=2, k=2 -> n - c < k -> 1
            "pass@3": 0.5,
            "mean_reward": (1.25 + 1.0 + 0.25 + 0 + 0.25) / 5,  # the all-missing sample is left out
            "reward/acc": 2 / 5,
            "reward/fmt": 3 / 5,
            "entropy": 10 / 7,  # token-weighted: 10 nats over 7 tokens
            "distinct_correct": (1 + 0) / 2,  # "x = 1" twice once stripped; none correct in question 2
            "distinct_1": (4 / 8 + 3 / 3) / 2,
            "distinct_2": (3 / 5 + 1 / 1) / 2,
            "mean_length": 7 / 6,
        }
    )
    assert "pass@4" not in metrics  # k above the number of samples


def test_mode_metrics_from_total_rewards_and_the_threshold():
    texts = [["a", "b"], ["c", "d"]]
    entropies = [[[1.0], [1.0]], [[1.0], [1.0]]]
    metrics = compute_mode_metrics([[1.0, 0.5], [0.2, 0.9]], texts, entropies, [[1, 1], [1, 1]], ks=(1, 2))
    assert metrics["pass@1"] == 0.5 and metrics["pass@2"] == 1.0  # 0.5 is not above the threshold 0.5
    assert "reward/reward_0" not in metrics and metrics["mean_reward"] == pytest.approx(0.65)
    strict = compute_mode_metrics(
        [[1.0, 0.5], [0.2, 0.9]], texts, entropies, [[1, 1], [1, 1]], ks=(2,), threshold=0.95
    )
    assert strict["pass@1"] == 0.25 and strict["pass@2"] == 0.5


def test_mode_metrics_reject_mismatched_texts():
    with pytest.raises(ValueError, match="texts"):
        compute_mode_metrics([[1.0, 0.0]], [["only one"]], [[[1.0], [1.0]]], [[1, 1]])


# ----------------------------------------------------------------------------------------------------------------
# Prompts and rewards


def test_build_prompts_adds_the_instruction_only_in_high_entropy_mode():
    prompts = list(conversational_dataset(4)["prompt"])
    assert build_prompts(prompts, NORMAL, INSTRUCTION) == prompts
    high = build_prompts(prompts, HIGH_ENTROPY, INSTRUCTION)
    assert high == [to_high_entropy(prompt, INSTRUCTION) for prompt in prompts]
    assert all(p[0]["role"] == "system" and p[0]["content"].startswith(INSTRUCTION) for p in high)
    assert build_prompts(["Compute 2 plus 2."], HIGH_ENTROPY)[0].startswith(DEFAULT_HIGH_ENTROPY_PROMPT)
    with pytest.raises(ValueError, match="unknown mode"):
        build_prompts(prompts, "greedy")


def test_rewards_get_chat_completions_and_the_dataset_columns_per_sample():
    calls = []

    def recording(prompts, completions, answer, **kwargs):
        calls.append({"prompts": prompts, "completions": completions, "answer": answer, **kwargs})
        return [1.0 if c[0]["content"] == a else None for c, a in zip(completions, answer, strict=True)]

    prompts = [[{"role": "user", "content": "1 + 1?"}], [{"role": "user", "content": "2 + 2?"}]]
    texts = [["2", "3"], ["4", "4 "]]
    rewards = score_completions(
        [recording, digit_reward], prompts, texts, [[[5], [6]], [[7], [8, 9]]], {"answer": ["2", "4"]}
    )
    assert rewards.shape == (2, 2, 2)
    np.testing.assert_array_equal(rewards[..., 0], [[1.0, np.nan], [1.0, np.nan]])
    np.testing.assert_array_equal(rewards[..., 1], [[1.0, 1.0], [1.0, 1.0]])
    (call,) = calls
    assert call["completions"][1] == [{"role": "assistant", "content": "3"}]
    assert call["answer"] == ["2", "2", "4", "4"] and call["prompts"][2] == prompts[1]
    assert call["completion_ids"] == [[5], [6], [7], [8, 9]]


# ----------------------------------------------------------------------------------------------------------------
# Sampling and the whole evaluation on the tiny model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_completion_lengths_stop_after_the_first_eos_even_when_pad_is_eos():
    import torch

    eos, other_eos = 9, 8  # pad == eos: rows are padded with 9 after they end
    completions = torch.tensor([[5, 9, 9, 9], [5, 6, 7, 1], [9, 9, 9, 9], [3, 8, 9, 9]])
    assert completion_lengths(completions, [eos, other_eos]).tolist() == [2, 4, 1, 2]
    assert completion_lengths(completions, [eos]).tolist() == [2, 4, 1, 3]


def test_sampling_is_batched_seeded_and_measured_per_token(tiny):
    model, tokenizer = tiny
    prompts = list(conversational_dataset(3)["prompt"])
    first = sample_completions(model, tokenizer, prompts, 2, max_new_tokens=6, batch_size=4, seed=1)
    again = sample_completions(model, tokenizer, prompts, 2, max_new_tokens=6, batch_size=4, seed=1)
    assert first["ids"] == again["ids"] and first["texts"] == again["texts"]
    for q in range(3):
        for s in range(2):
            ids, length = first["ids"][q][s], first["lengths"][q][s]
            assert 1 <= length <= 6 and len(ids) == length == len(first["entropies"][q][s])
            assert tokenizer.eos_token_id not in ids[:-1]  # nothing after the first EOS
            assert all(0 < h <= math.log(len(tokenizer)) + 1e-4 for h in first["entropies"][q][s])
    hot = sample_completions(model, tokenizer, prompts[:1], 1, temperature=0.25, max_new_tokens=2, seed=1)
    assert hot["entropies"][0][0][0] < first["entropies"][0][0][0]  # entropy at the sampling temperature


def instruction_reward(prompts, completions, mode, **kwargs):
    """1 in high-entropy mode; as in training, the reward sees the question's normal prompt (no instruction)."""
    assert not any(INSTRUCTION in str(p) for p in prompts)
    return [float(m == HIGH_ENTROPY) for m in mode]


def _check_mode_metrics(metrics: dict, ks, vocab_size: int) -> None:
    for name in METRICS:
        assert name in metrics and isinstance(metrics[name], float), name
    passes = [metrics[f"pass@{k}"] for k in ks]
    assert all(0.0 <= p <= 1.0 for p in passes) and passes == sorted(passes)
    assert 0.0 < metrics["entropy"] <= math.log(vocab_size) + 1e-4
    assert 0.0 <= metrics["distinct_1"] <= 1.0 and 0.0 <= metrics["distinct_2"] <= 1.0
    assert 0.0 <= metrics["distinct_correct"] <= 4
    assert 1.0 <= metrics["mean_length"] <= 8


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_the_entropy_recorder_gives_generates_score_entropies_without_storing_scores(tiny, temperature):
    """The recorder (a logits processor) must measure the distribution tokens are drawn from, as entropies of
    generate's own processed `output_scores` did, and must not change what is sampled."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, set_seed

    model, tokenizer = tiny
    prompt = tokenizer.apply_chat_template(
        [[{"role": "user", "content": "What is 3 + 4?"}]] * 3, add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )  # fmt: skip
    config = GenerationConfig(
        max_new_tokens=6, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, return_dict_in_generate=True,
    )  # fmt: skip
    recorder = EntropyRecorder(temperature)
    set_seed(3)
    with torch.inference_mode():
        recorded = model.generate(
            **prompt, generation_config=config, logits_processor=LogitsProcessorList([recorder]), output_scores=True
        )
    set_seed(3)
    with torch.inference_mode():
        plain = model.generate(**prompt, generation_config=config)
    assert torch.equal(recorded.sequences, plain.sequences)
    entropies = recorder.entropies()
    assert entropies.shape == (3, recorded.sequences.shape[1] - prompt["input_ids"].shape[1])
    torch.testing.assert_close(entropies, token_entropies(recorded.scores), rtol=1e-5, atol=1e-5)
    assert plain.scores is None  # the evaluation no longer asks generate for the scores


def test_evaluate_model_measures_both_modes_with_the_instruction_in_high_entropy_prompts(tiny, monkeypatch, capsys):
    model, tokenizer = tiny
    sampled_prompts = []
    sample = evaluation.sample_completions

    def recording_sample(model, tokenizer, prompts, *args, **kwargs):
        sampled_prompts.append(prompts)
        return sample(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluation, "sample_completions", recording_sample)
    results = evaluate_model(
        model,
        tokenizer,
        conversational_dataset(3),
        [digit_reward, instruction_reward],
        num_samples=4,
        ks=(1, 2, 4),
        max_new_tokens=8,
        batch_size=6,
        high_entropy_prompt=INSTRUCTION,
        reward_weights=(1.0, 0.0),  # the instruction check must not count as correctness
        reward_names=("digit", "instruction"),
        show_progress=True,
    )
    # Progress over questions x samples x modes: 3 x 4 x 2.
    progress = capsys.readouterr().err
    assert "evaluating" in progress and "24/24" in progress and "mode=high_entropy" in progress
    assert set(results["metrics"]) == {NORMAL, HIGH_ENTROPY}
    for mode, metrics in results["metrics"].items():
        _check_mode_metrics(metrics, (1, 2, 4), len(tokenizer))
        assert metrics["pass@1"] == pytest.approx(metrics["reward/digit"])
        assert len(results["per_question"][mode]["num_correct"]) == 3
    assert results["metrics"][NORMAL]["reward/instruction"] == 0.0
    assert results["metrics"][HIGH_ENTROPY]["reward/instruction"] == 1.0
    normal_prompts, high_prompts = sampled_prompts  # modes in order: normal, then high entropy
    assert normal_prompts == list(conversational_dataset(3)["prompt"])
    assert all(p[0]["role"] == "system" and p[0]["content"].startswith(INSTRUCTION) for p in high_prompts)


# ----------------------------------------------------------------------------------------------------------------
# Settings and the command line


def _settings(argv):
    return resolve_settings(build_parser().parse_args(argv))


def test_without_a_run_the_defaults_are_the_arithmetic_test_split(tmp_path):
    settings = _settings([str(tmp_path)])
    assert settings.script_args.dataset_name == "arithmetic" and settings.script_args.reward_funcs == ["arithmetic"]
    assert settings.split == "test" and settings.high_entropy_prompt == DEFAULT_HIGH_ENTROPY_PROMPT
    assert settings.run_info is None and settings.reward_weights is None
    assert default_output(str(tmp_path), "test") == str(tmp_path / "eval" / "test.json")
    assert default_output("smollm2-135m-instruct", "test") == "eval_results.json"


def test_a_run_supplies_data_rewards_weights_and_instruction_and_flags_override_them(tmp_path):
    info = {
        "script_args": {
            "dataset_name": "arithmetic",
            "arithmetic_level": 2,
            "dataset_test_split": "heldout",
            "reward_funcs": ["arithmetic", "format"],
            "not_a_field_any_more": 1,
        },
        "high_entropy_prompt": INSTRUCTION,
    }
    (tmp_path / RUN_INFO_FILE).write_text(json.dumps(info))
    settings = _settings([str(tmp_path)])
    assert settings.script_args.arithmetic_level == 2 and settings.split == "heldout"
    assert (
        settings.script_args.reward_funcs == ["arithmetic", "format"] and settings.high_entropy_prompt == INSTRUCTION
    )
    assert settings.reward_weights is None and "reward weights" in settings.notes[0]
    (tmp_path / RUN_INFO_FILE).write_text(json.dumps({**info, "reward_weights": [1.0, 0.25]}))
    assert _settings([str(tmp_path)]).reward_weights == [1.0, 0.25]
    settings = _settings(
        [str(tmp_path), "--split", "train", "--reward-funcs", "format", "--high-entropy-prompt", "Hi"]
    )
    assert (settings.split, settings.script_args.reward_funcs, settings.high_entropy_prompt) == (
        "train",
        ["format"],
        "Hi",
    )
    assert settings.reward_weights is None and not settings.notes
    with pytest.raises(CLIError, match="2 reward weights for 1"):
        _settings([str(tmp_path), "--reward-funcs", "format", "--reward-weights", "1", "2"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(filter(None, [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


@pytest.fixture
def run_dir(tiny_model_dir, tmp_path):
    """A training run's directory: the tiny model, a local jsonl split and the run description."""
    data = tmp_path / "questions.jsonl"
    conversational_dataset(5).to_json(str(data))
    run = Path(shutil.copytree(tiny_model_dir, tmp_path / "run"))
    script_args = {"dataset_name": str(data), "dataset_test_split": "heldout", "reward_funcs": ["tiny:digit_reward"]}
    info = {"script_args": script_args, "model_name_or_path": "tiny", "high_entropy_prompt": INSTRUCTION}
    (run / RUN_INFO_FILE).write_text(json.dumps(info))
    return run


def test_cli_evaluates_a_run_directory_and_writes_the_json(run_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    flags = ["--num-questions", "3", "--num-samples", "4", "--k", "1", "2", "4", "--max-new-tokens", "8"]
    result = _cli(str(run_dir), *flags, "--batch-size", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    output = run_dir / "eval" / "heldout.json"  # the run's held-out split, under the checkpoint
    report = json.loads(output.read_text())
    settings = report["settings"]
    assert settings["split"] == "heldout" and settings["num_questions"] == 3 and settings["num_samples"] == 4
    assert settings["high_entropy_prompt"] == INSTRUCTION and settings["reward_funcs"] == ["tiny:digit_reward"]
    assert settings["temperature"] == 1.0 and settings["seed"] == 0 and settings["checkpoint"] == str(run_dir)
    assert set(report["metrics"]) == {NORMAL, HIGH_ENTROPY}
    for metrics in report["metrics"].values():
        _check_mode_metrics(metrics, (1, 2, 4), len(AutoTokenizer.from_pretrained(tiny_model_dir)))
    table = result.stdout.splitlines()
    assert table[0].split() == [NORMAL, HIGH_ENTROPY] and any(line.startswith("pass@4") for line in table)
    assert list(report["averaging"]) == list(report["metrics"][NORMAL])  # every number says how it is averaged
    assert report["averaging"]["entropy"].startswith("token-weighted") and "averaging:" in table
    assert f"wrote {output}" in result.stdout


def test_cli_reports_a_missing_column_in_one_line_and_exits_2(run_dir):
    result = _cli(str(run_dir), "--prompt-column", "question", "--output", str(run_dir / "never.json"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    messages = [line for line in result.stderr.splitlines() if line.startswith("evaluate:")]
    assert messages == [messages[0]] and messages[0].startswith(
        "evaluate: error: the dataset has no column 'question'"
    )
    assert not (run_dir / "never.json").exists()


def test_the_report_says_how_each_metric_is_averaged():
    metrics = {NORMAL: {"pass@1": 0.5, "pass@4": 0.75, "reward/format": 0.25, "entropy": 1.0, "distinct_1": 0.5}}
    averaging = metric_averaging(list(metrics[NORMAL]))
    assert list(averaging) == list(metrics[NORMAL])
    assert averaging["pass@4"].startswith("per question") and averaging["entropy"].startswith("token-weighted")
    assert averaging["reward/format"].startswith("per sample") and averaging["distinct_1"].startswith("per question")
    lines = format_table(metrics, averaging).splitlines()
    assert lines[:6] == format_table(metrics).splitlines()  # the table itself is unchanged
    assert lines[6] == "averaging:" and lines[7:] == [f"  {name}: {text}" for name, text in averaging.items()]


# ----------------------------------------------------------------------------------------------------------------
# Before / after


def _report(metrics: dict, **settings) -> dict:
    return {"settings": {"split": "test", "num_questions": 20, "num_samples": 4, **settings}, "metrics": metrics}


BEFORE = _report(
    {NORMAL: {"pass@1": 0.1, "pass@4": 0.25, "entropy": 1.5}, HIGH_ENTROPY: {"pass@1": 0.05, "entropy": 2.0}}
)
AFTER = _report(
    {NORMAL: {"pass@1": 0.85, "pass@4": 1.0, "entropy": 0.9}, HIGH_ENTROPY: {"pass@1": 0.8, "pass@4": 0.95}}
)


def test_compare_reports_makes_a_before_after_table_per_mode():
    assert compare_reports(BEFORE, AFTER).splitlines() == [
        "mode          metric   untrained  trained  change",
        "normal        pass@1       0.100    0.850  +0.750",
        "normal        pass@4       0.250    1.000  +0.750",
        "normal        entropy      1.500    0.900  -0.600",
        "high_entropy  pass@1       0.050    0.800  +0.750",
        "high_entropy  pass@4           -    0.950       -",
        "high_entropy  entropy      2.000        -       -",
    ]
    other = _report(AFTER["metrics"], num_samples=8)
    table = compare_reports(BEFORE, other, metrics=["pass@1"], labels=("base", "grpo")).splitlines()
    assert table[0].split() == ["mode", "metric", "base", "grpo", "change"] and len(table) == 4
    assert table[-1] == "note: num_samples differs: 4 (base) vs 8 (grpo)"  # not the same measurement


def test_cli_compare_prints_the_table_and_reports_a_bad_file_in_one_line(tmp_path, capsys):
    before, after = tmp_path / "untrained.json", tmp_path / "test.json"
    before.write_text(json.dumps(BEFORE))
    after.write_text(json.dumps(AFTER))
    assert evaluation.main(["compare", str(before), str(after)]) == 0
    assert capsys.readouterr().out.splitlines() == compare_reports(BEFORE, AFTER).splitlines()
    assert evaluation.main(["compare", str(before), str(tmp_path / "missing.json")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("evaluate: error: cannot read the report") and error.count("\n") == 1
