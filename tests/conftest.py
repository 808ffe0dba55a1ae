from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch  # noqa: E402
from tiny import build_tiny_model  # noqa: E402

# The tiny model gains nothing from intra-op threads; with 2 cores they only contend with each other and with the
# multi-process tests' workers.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def pytest_ignore_collect(collection_path, config) -> bool | None:
    """The real-engine tier (tests/real_vllm) needs vLLM installed: it runs on its own, with `-m vllm`, from
    `bash scripts/run_vllm_tests.sh`. (Not tests/vllm: this folder is on sys.path, and a `vllm` folder in it would
    pass for an installed vLLM, a namespace package, wherever vLLM is not installed.)"""
    if collection_path == Path(__file__).parent / "real_vllm" and "vllm" not in (config.getoption("markexpr") or ""):
        return True
    return None
