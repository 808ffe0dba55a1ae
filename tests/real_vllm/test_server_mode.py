"""Every trainer against a real `trl vllm-serve` process (`vllm_mode="server"`), 2 optimizer steps each."""

from __future__ import annotations

import pytest
from engine_checks import TRAINERS, build_trainer, check_trained, train_and_record

pytestmark = pytest.mark.vllm


@pytest.mark.parametrize("name", list(TRAINERS), ids=[f"{name}-server" for name in TRAINERS])
def test_trains(vllm_model_dir: str, vllm_server, tmp_path, name: str) -> None:
    trainer = build_trainer(name, vllm_model_dir, tmp_path, "server", port=vllm_server.port)
    check_trained(train_and_record(trainer, "server"))
