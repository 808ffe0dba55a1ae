"""Multi-process tests: the cross-process internal reward over gloo, and short trainings under `accelerate launch`.

Part a spawns gloo process groups directly and checks that every process gets exactly its rows of the
single-process result, whatever the split of a question's group across processes and the width of each process's
completions. Part b launches `tests/multiprocess_train.py` with the CPU recipes (DDP, DeepSpeed ZeRO-2 and ZeRO-3 over
2 processes) and checks the logged per-mode metrics against a 1-process run of the same global batch.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from trl_policysplit.distributed import gather_padded, local_rows
from trl_policysplit.functional import dual_mode_internal_rewards

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "multiprocess_train.py"
RECIPES = REPO / "recipes" / "accelerate"
MODES = ("normal", "high_entropy")

# ------------------------------------------------------------------------------------------------------------------
# a. the trainers' cross-process path (gather_padded, a group step on every process's rows, local_rows) over gloo

# (world size, group size 2n, questions): with 2 processes a group is split at a mode boundary whenever the number of
# questions is odd; with 4 processes groups are also split inside a mode (8 rows of one question, 2 per process) and a
# process can hold the end of one group and the start of the next.
LAYOUTS = {
    2: [(4, 2), (4, 1), (4, 3), (8, 1), (2, 2)],
    4: [(8, 1), (4, 3), (4, 2)],
}
_COEFFICIENTS = {"alpha": 0.3, "eta_high": 0.2, "eta_normal": 0.1}
REWARD_KWARGS = [
    {**_COEFFICIENTS, "normalization": norm, "low_quantile": q, "share_rollouts": share}
    for norm in ("zscore", "range", "none")
    for q in (0.0, 0.3)
    for share in (True, False)
]
_GARBAGE = 99.0  # surprisal beyond a row's valid tokens: must never leak into a result


@dataclass
class Layout:
    """One batch of whole question groups, cut into equal row blocks of different widths (process r: 5 + 2r)."""

    group_size: int
    own: list[torch.Tensor]
    cross: list[torch.Tensor]
    mask: list[torch.Tensor]
    high: list[torch.Tensor]

    def full(self, name: str, pad_value: float = -7.0) -> torch.Tensor:
        """The blocks of ``name`` concatenated, padded to the widest block (any pad value: they are invalid)."""
        parts = getattr(self, name)
        width = max(part.size(1) for part in parts)
        return torch.cat([torch.nn.functional.pad(part, (0, width - part.size(1)), value=pad_value) for part in parts])


def _make_layout(world: int, group_size: int, questions: int, seed: int) -> Layout:
    generator = torch.Generator().manual_seed(seed)
    rows = group_size * questions // world
    own, cross, mask, high = [], [], [], []
    for rank in range(world):
        width = 5 + 2 * rank
        lengths = torch.randint(1, width + 1, (rows,), generator=generator)
        lengths[0] = width  # a full row on every process
        if rank == world - 1:
            lengths[-1] = 0  # an empty row (e.g. a masked truncated completion)
        valid = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        mask.append(valid.long())
        own.append((torch.rand(rows, width, generator=generator) * 6).masked_fill(~valid, _GARBAGE))
        cross.append((torch.rand(rows, width, generator=generator) * 6).masked_fill(~valid, _GARBAGE))
        global_rows = torch.arange(rank * rows, (rank + 1) * rows)
        high.append(global_rows % group_size >= group_size // 2)
    return Layout(group_size, own, cross, mask, high)


def _gather_probe(rank: int) -> dict[str, torch.Tensor]:
    """gather_padded of tensors whose width and values depend on the rank."""
    width = 2 + rank
    flags = (torch.arange(3 * width).reshape(3, width) + rank) % 2 == 0
    values = torch.arange(3 * width, dtype=torch.float32).reshape(3, width) + 100 * rank
    return {
        "bool": gather_padded(flags),
        "float": gather_padded(values, pad_value=-1.5),
        "long": gather_padded(values.long(), pad_value=-1),
        "vector": gather_padded(torch.full((3,), float(rank))),
    }


def _reward_worker(rank: int, world: int, init_file: str, layouts: list[Layout], out_dir: str) -> None:
    """Body of each spawned process: run every layout and kwargs set, save this process's results."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        results: dict[str, Any] = {"gather": _gather_probe(rank), "rewards": []}
        for layout in layouts:
            for kwargs in REWARD_KWARGS:
                # What PolicySplitTrainer does with its rows: gather, run the group step, keep its own rows.
                rows, width = layout.own[rank].shape
                gathered = (
                    gather_padded(layout.own[rank].float()),
                    gather_padded(layout.cross[rank].float()),
                    gather_padded(layout.mask[rank].long()),
                    gather_padded(layout.high[rank].bool()),
                )
                own, cross = dual_mode_internal_rewards(*gathered, layout.group_size, **kwargs)
                own = local_rows(own, rows, width)
                cross = None if cross is None else local_rows(cross, rows, width)
                results["rewards"].append((own, cross, gathered))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(world: int, tmp_path: Path, layouts: list[Layout], timeout: float = 180.0) -> list[dict[str, Any]]:
    """Run `_reward_worker` in ``world`` spawned processes; fail (and kill them) on error or after ``timeout``."""
    context = mp.start_processes(
        _reward_worker,
        args=(world, str(tmp_path / "init"), layouts, str(tmp_path)),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=5):  # raises if a process failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"gloo workers did not finish within {timeout:.0f}s (deadlock in a collective?)")
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(world)]


def _layouts(world: int) -> list[Layout]:
    return [_make_layout(world, g, q, seed=i) for i, (g, q) in enumerate(LAYOUTS[world])]


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], list[dict[str, Any]]]:
    """``gloo_results(world)``: every process's results for ``_layouts(world)``, spawned once per world size."""
    cache: dict[int, list[dict[str, Any]]] = {}

    def results(world: int) -> list[dict[str, Any]]:
        if world not in cache:
            cache[world] = _spawn(world, tmp_path_factory.mktemp(f"gloo{world}"), _layouts(world))
        return cache[world]

    return results


@pytest.mark.parametrize("world", sorted(LAYOUTS))
def test_internal_rewards_across_processes_match_single_process(
    world: int, gloo_results: Callable[[int], list[dict[str, Any]]]
) -> None:
    layouts = _layouts(world)
    results = gloo_results(world)

    index = 0
    for layout in layouts:
        full_own, full_cross, full_mask = layout.full("own"), layout.full("cross"), layout.full("mask", 0)
        full_high = torch.cat(layout.high)
        for kwargs in REWARD_KWARGS:
            ref_own, ref_cross = dual_mode_internal_rewards(
                full_own, full_cross, full_mask, full_high, layout.group_size, **kwargs
            )
            assert (ref_cross is None) == (not kwargs["share_rollouts"])
            context = f"world={world} group_size={layout.group_size} rows={full_own.size(0)} {kwargs}"
            for rank in range(world):
                own, cross, gathered = results[rank]["rewards"][index]
                rows = layout.own[rank].size(0)
                width = layout.own[rank].size(1)
                block = slice(rank * rows, (rank + 1) * rows)
                assert own.shape == (rows, width), context
                torch.testing.assert_close(own, ref_own[block, :width], msg=lambda m, c=context: f"own {c}: {m}")
                assert not ref_own[block, width:].any(), context  # nothing valid past this process's width
                if ref_cross is None:
                    assert cross is None, context
                else:
                    assert cross is not None and cross.shape == (rows, width), context
                    torch.testing.assert_close(
                        cross, ref_cross[block, :width], msg=lambda m, c=context: f"cross {c}: {m}"
                    )
                # The gathered inputs are the global batch in rank order, zero-padded to the widest process.
                surprisal_own, surprisal_cross, mask, high = gathered
                torch.testing.assert_close(mask, full_mask)
                torch.testing.assert_close(high, full_high)
                valid = full_mask.bool()
                torch.testing.assert_close(surprisal_own[valid], full_own[valid])
                torch.testing.assert_close(surprisal_cross[valid], full_cross[valid])
            index += 1
    assert index == len(results[0]["rewards"])


@pytest.mark.parametrize("world", sorted(LAYOUTS))
def test_gather_padded_rank_order_padding_and_dtype(
    world: int, gloo_results: Callable[[int], list[dict[str, Any]]]
) -> None:
    results = gloo_results(world)
    width = 2 + (world - 1)
    expected_bool, expected_float = [], []
    for rank in range(world):
        own_width = 2 + rank
        flags = (torch.arange(3 * own_width).reshape(3, own_width) + rank) % 2 == 0
        values = torch.arange(3 * own_width, dtype=torch.float32).reshape(3, own_width) + 100 * rank
        expected_bool.append(torch.nn.functional.pad(flags, (0, width - own_width), value=False))
        expected_float.append(torch.nn.functional.pad(values, (0, width - own_width), value=-1.5))
    expected_bool_t, expected_float_t = torch.cat(expected_bool), torch.cat(expected_float)
    for rank in range(world):
        gathered = results[rank]["gather"]
        assert gathered["bool"].dtype == torch.bool
        assert torch.equal(gathered["bool"], expected_bool_t)
        assert gathered["float"].dtype == torch.float32
        assert torch.equal(gathered["float"], expected_float_t)
        assert gathered["long"].dtype == torch.long
        assert torch.equal(gathered["long"], torch.where(expected_float_t == -1.5, -1, expected_float_t.long()))
        assert torch.equal(gathered["vector"], torch.arange(world, dtype=torch.float32).repeat_interleave(3))


# ------------------------------------------------------------------------------------------------------------------
# b. PolicySplitTrainer under accelerate launch (DDP, ZeRO-2, ZeRO-3 on 2 CPU processes) vs one process

COUNT_KEYS = [f"policy_split/{mode}/{name}" for mode in MODES for name in ("completions", "train_sequences")]
METRIC_KEYS = [
    f"policy_split/{mode}/{name}"
    for mode in MODES
    for name in ("reward", "completion_length", "surprisal", "entropy", "distinct_correct", "clamp_frac")
] + [
    "policy_split/kl_normal_to_high_entropy",
    "policy_split/kl_high_entropy_to_normal",
    "policy_split/kl_normal_to_high_entropy_token",
    "policy_split/kl_high_entropy_to_normal_token",
    "policy_split/clamp_frac",
]
# Computed from the generation batch before the first update: equal at step 1 across 2-process backends.
STEP_ONE_KEYS = [key for key in METRIC_KEYS if not key.endswith("/entropy")]
NUM_GENERATIONS = 4
LAUNCH_TIMEOUT_S = 240
# 3 questions x 4 completions = 12 rows: with 2 processes, question 1's group is split (its normal completions on
# process 0, its high-entropy ones on process 1). The ablation run has 1 question: each process holds one mode only.
RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ddp": ("cpu_ddp.yaml", ()),
    "zero2": ("cpu_deepspeed_zero2.yaml", ()),
    "zero3": ("cpu_deepspeed_zero3.yaml", ("--beta", "0.04")),
    "zero3-ablation": (
        "cpu_deepspeed_zero3.yaml",
        ("--no-share-rollouts", "--entropy-estimator", "entropy", "--questions", "1"),
    ),
}


@dataclass
class TrainRun:
    """What a run of tests/multiprocess_train.py left behind."""

    steps: list[dict[str, Any]]
    info: dict[str, Any]
    save_dir: Path
    wall_s: float
    queues: list[dict[str, Any]]  # every process's DiPO queue and threshold after training, by rank


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_DISABLED="true",
        CUDA_VISIBLE_DEVICES="",  # the CPU recipes: same code path on machines with GPUs
        DS_ACCELERATOR="cpu",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_command(command: list[str], timeout: float) -> float:
    """Run ``command`` in its own process group; on failure or timeout kill the group and show its output."""
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"Timed out after {timeout}s: {' '.join(command)}\n--- output tail ---\n{output[-6000:]}")
    if process.returncode != 0:
        pytest.fail(f"Exit code {process.returncode}: {' '.join(command)}\n--- output tail ---\n{output[-6000:]}")
    return time.monotonic() - start


@pytest.fixture(scope="module")
def train(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TrainRun]:
    """``train(config, extra)``: run the script under ``accelerate launch --config_file`` (or plainly when config is
    None, 1 process) with the shared tiny model; results are cached per (config, extra) for the module."""
    cache: dict[tuple[str | None, tuple[str, ...]], TrainRun] = {}

    def run(config: str | None, extra: tuple[str, ...] = ()) -> TrainRun:
        if (config, extra) not in cache:
            out = tmp_path_factory.mktemp("run")
            script_args = [
                str(SCRIPT), "--model-dir", tiny_model_dir, "--output", str(out / "log.json"),
                "--run-info", str(out / "info.json"), "--save-dir", str(out / "model"),
                "--queue-dir", str(out / "queues"),
                "--num-generations", str(NUM_GENERATIONS), *extra,
            ]  # fmt: skip
            if config is None:
                command = [sys.executable, *script_args]
            else:
                command = [
                    sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / config),
                    "--num_processes", "2", "--main_process_port", str(_free_port()), *script_args,
                ]  # fmt: skip
            wall_s = _run_command(command, LAUNCH_TIMEOUT_S)
            history = json.loads((out / "log.json").read_text())
            cache[config, extra] = TrainRun(
                steps=[entry for entry in history if "loss" in entry],
                info=json.loads((out / "info.json").read_text()),
                save_dir=out / "model",
                wall_s=wall_s,
                queues=[json.loads(path.read_text()) for path in sorted((out / "queues").glob("queue_rank*.json"))],
            )
            label = " ".join([config or "single process", *extra])
            print(f"[{label}] {wall_s:.1f}s")
        return cache[config, extra]

    return run


def _check_run(run: TrainRun, questions: int, share: bool, model_dir: str) -> None:
    """Metrics present and finite, per-mode metrics global, parameters changed."""
    assert [entry["step"] for entry in run.steps] == [1, 2]
    rows = questions * NUM_GENERATIONS
    for entry in run.steps:
        missing = [key for key in COUNT_KEYS + METRIC_KEYS if key not in entry]
        assert not missing, f"step {entry['step']}: missing {missing}"
        not_finite = {key: entry[key] for key in METRIC_KEYS if not math.isfinite(entry[key])}
        assert not not_finite, f"step {entry['step']}: not finite {not_finite}"
        for mode in MODES:
            assert entry[f"policy_split/{mode}/completions"] == rows // 2
            assert entry[f"policy_split/{mode}/train_sequences"] == rows // 2 * (2 if share else 1)
        # Per-mode metrics cover every process's rows: each mode holds half of the completions TRL averages over.
        lengths = [entry[f"policy_split/{mode}/completion_length"] for mode in MODES]
        assert sum(lengths) / 2 == pytest.approx(entry["completions/mean_length"], rel=1e-5)
        rewards = [entry[f"policy_split/{mode}/reward"] for mode in MODES]
        assert sum(rewards) / 2 == pytest.approx(entry["reward"], rel=1e-5)
        # The tiny model is close to uniform, so every token's entropy is about log(vocab): a per-mode mean far from
        # TRL's all-rows mean means rows or micro-batches were averaged in wrongly.
        for mode in MODES:
            assert entry[f"policy_split/{mode}/entropy"] == pytest.approx(entry["entropy"], rel=0.02), mode
        assert math.isfinite(entry["grad_norm"]) and entry["grad_norm"] > 0
    before = load_file(Path(model_dir) / "model.safetensors")
    after = load_file(run.save_dir / "model.safetensors")
    assert set(before) == set(after)  # the model's own structure: tied embeddings saved once
    assert all(torch.isfinite(after[name]).all() for name in before)
    assert any(not torch.equal(before[name], after[name]) for name in before), "no parameter changed"


@pytest.mark.parametrize("name", list(RUNS))
def test_accelerate_launch_matches_single_process(name: str, train: Callable[..., TrainRun], tiny_model_dir: str):
    config, extra = RUNS[name]
    share = "--no-share-rollouts" not in extra
    questions = int(extra[extra.index("--questions") + 1]) if "--questions" in extra else 3
    multi = train(config, extra)
    single = train(None, extra)

    assert multi.info["num_processes"] == 2 and single.info["num_processes"] == 1
    if "deepspeed" in config:
        assert multi.info["distributed_type"] == "DEEPSPEED" and multi.info["engine"] == "DeepSpeedEngine"
        assert multi.info["zero_stage"] == (3 if "zero3" in config else 2)
    else:
        assert multi.info["engine"] == "DistributedDataParallel"
    # Same global batch: half the rows per process.
    assert multi.info["per_device_train_batch_size"] * 2 == single.info["per_device_train_batch_size"]

    _check_run(single, questions, share, tiny_model_dir)
    _check_run(multi, questions, share, tiny_model_dir)
    for multi_step, single_step in zip(multi.steps, single.steps, strict=True):
        counts = {key: (multi_step[key], single_step[key]) for key in COUNT_KEYS}
        assert all(a == b for a, b in counts.values()), f"step {multi_step['step']}: {counts}"


def test_zero2_saves_tied_embeddings_once_and_they_load_back_tied(train: Callable[..., TrainRun], tiny_model_dir: str):
    """ZeRO-2's state dict clones every tensor, so tied weights stopped sharing storage and transformers saved an
    untied lm_head.weight next to the embeddings: a bigger file that no longer matched tie_word_embeddings=True."""
    from transformers import AutoModelForCausalLM

    run = train("cpu_deepspeed_zero2.yaml", ())
    assert run.info["zero_stage"] == 2 and run.info["num_processes"] == 2
    saved = load_file(run.save_dir / "model.safetensors")
    assert "lm_head.weight" not in saved and "model.embed_tokens.weight" in saved
    assert set(saved) == set(load_file(Path(tiny_model_dir) / "model.safetensors"))
    model, loading = AutoModelForCausalLM.from_pretrained(run.save_dir, output_loading_info=True)
    assert model.config.tie_word_embeddings
    assert not loading["missing_keys"] and not loading["unexpected_keys"] and not loading["mismatched_keys"]
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied again on load
    loaded = model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name


def test_two_process_backends_agree_on_first_step(train: Callable[..., TrainRun]) -> None:
    """DDP, ZeRO-2 and ZeRO-3 see the same 2-process layout, seeds and initial weights, so the same rollouts: the
    per-mode metrics of the first step (taken before any update) must agree."""
    first = {name: train(*RUNS[name]).steps[0] for name in ("ddp", "zero2", "zero3")}
    for name in ("zero2", "zero3"):
        for key in STEP_ONE_KEYS:
            assert first[name][key] == pytest.approx(first["ddp"][key], rel=1e-4, abs=1e-6), (name, key)


def test_per_mode_entropy_with_micro_batches_missing_a_mode(train: Callable[..., TrainRun], tiny_model_dir: str):
    # 1 question x 2 completions, 2 micro-batches of 2 of the 4 trained rows: each mode's own rollout is in one
    # micro-batch only, so the other micro-batch has no token of that mode.
    extra = ("--questions", "1", "--num-generations", "2", "--gradient-accumulation-steps", "2")
    run = train(None, extra)
    for entry in run.steps:
        for mode in MODES:
            assert entry[f"policy_split/{mode}/entropy"] == pytest.approx(entry["entropy"], rel=0.02), mode


# ------------------------------------------------------------------------------------------------------------------
# c. Advantage shaping across processes: DiPO's queue and threshold, asymmetric advantages inside Policy Split

SHAPED_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    # GRPO + DiPO: TRL computes no old log-probs here, so DiPO runs its own no-grad forward on every process.
    "dipo-zero2": ("cpu_deepspeed_zero2.yaml", ("--trainer", "dipo", "--max-steps", "3")),
    "dipo-zero3": ("cpu_deepspeed_zero3.yaml", ("--trainer", "dipo", "--max-steps", "3")),
    "policy-split-asym-dipo-zero2": (
        "cpu_deepspeed_zero2.yaml",
        ("--asymmetric-advantages", "--perplexity-reallocation", "--max-steps", "3"),
    ),
}


@pytest.mark.parametrize("name", list(SHAPED_RUNS))
def test_processes_share_one_perplexity_queue_and_threshold(name: str, train: Callable[..., TrainRun]):
    config, extra = SHAPED_RUNS[name]
    run = train(config, extra)
    assert run.info["num_processes"] == 2 and run.info["zero_stage"] == (3 if "zero3" in config else 2)
    assert len(run.queues) == 2
    rank0, rank1 = run.queues
    # The queue holds the last 2 generation batches of the whole run (3 questions x 4 completions each), gathered
    # from both processes, so it is the same list on both.
    assert [len(batch) for batch in rank0["ppl"]] == [3 * NUM_GENERATIONS] * 2
    assert rank0["ppl"] == rank1["ppl"] and rank0["correct"] == rank1["correct"]
    assert rank0["threshold"] == rank1["threshold"] and rank0["valid"] == rank1["valid"]
    assert all(math.isfinite(value) and value > 1.0 for batch in rank0["ppl"] for value in batch)
    for entry in run.steps:
        for key in ("dipo/valid_split", "dipo/frac_groups_up", "dipo/frac_groups_down", "advantage/pos_mean"):
            assert key in entry, (entry["step"], key)
        assert entry["dipo/queue_size"] == min(entry["step"], 2) * 3 * NUM_GENERATIONS
    # The last step's logged threshold is the one both processes hold at the end.
    logged = run.steps[-1].get("dipo/threshold")
    assert (logged is None and rank0["threshold"] is None) or logged == pytest.approx(rank0["threshold"], rel=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# d. Policy Split's drift guards and the authors' completions per mode across processes


def test_drift_guards_and_authors_sample_count_agree_across_processes(train: Callable[..., TrainRun]):
    from trl_policysplit.functional import adapted_coefficient

    extra = (
        "--completions-per-mode", "num_generations", "--cross-importance-sampling", "token_truncate",
        "--eta-high-target-kl", "0.001", "--max-steps", "3", "--questions", "2",
    )  # fmt: skip
    run = train("cpu_deepspeed_zero2.yaml", extra)
    assert run.info["num_processes"] == 2 and run.info["zero_stage"] == 2
    rank0, rank1 = run.queues
    assert rank0["eta_high"] == rank1["eta_high"]  # one controller state on every process
    eta = 0.2  # the config's start value (PolicySplitConfig's default)
    for entry in run.steps:
        # num_generations per mode: 2 questions x 4 completions in each mode, every one trained under both prompts.
        for mode in MODES:
            assert entry[f"policy_split/{mode}/completions"] == 2 * NUM_GENERATIONS
            assert entry[f"policy_split/{mode}/train_sequences"] == 4 * NUM_GENERATIONS
        # The logged eta is the controller applied to the batch's global KL (the logged per-sequence KL).
        eta = adapted_coefficient(eta, entry["policy_split/kl_high_entropy_to_normal"], 0.001, maximum=0.2)
        assert entry["policy_split/eta_high"] == pytest.approx(eta, rel=1e-4)
        for context in MODES:
            weight = entry[f"policy_split/cross_is_weight/{context}_context"]
            assert 0.0 < weight <= 2.0 and weight != 1.0
    assert rank0["eta_high"] == pytest.approx(eta, rel=1e-4)
