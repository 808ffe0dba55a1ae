"""Every trainer against a real colocated vLLM engine (`vllm_mode="colocate"`), 2 optimizer steps each."""

from __future__ import annotations

import gc

import pytest
from engine_checks import TRAINERS, build_trainer, check_trained, train_and_record

pytestmark = pytest.mark.vllm


@pytest.mark.parametrize("name", list(TRAINERS), ids=[f"{name}-colocate" for name in TRAINERS])
def test_trains(vllm_model_dir: str, tmp_path, name: str) -> None:
    trainer = build_trainer(name, vllm_model_dir, tmp_path, "colocate")
    try:
        check_trained(train_and_record(trainer, "colocate"))
    finally:
        del trainer
        gc.collect()  # one engine at a time
