"""Set-up errors that need vLLM installed: a server that is not there."""

from __future__ import annotations

import pytest
from engine_checks import build_trainer, free_port

pytestmark = pytest.mark.vllm


def test_unreachable_server_names_host_port_and_the_command(vllm_model_dir: str, tmp_path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ConnectionError) as raised:
        build_trainer("PolicySplitTrainer", vllm_model_dir, tmp_path, "server", port=port, server_timeout=1)
    message = str(raised.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{port}" in message and "vllm_server_timeout=1 s" in message
    assert f"trl vllm-serve --model {vllm_model_dir} --port {port}" in message
