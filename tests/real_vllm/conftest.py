"""Fixtures of the real-engine tier: a model vLLM's CPU attention can serve, and a `trl vllm-serve` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from engine_checks import free_port
from tiny import build_tiny_model

from trl_policysplit.vllm_cpu import EXTENSION, cuda_available

SERVER_START_TIMEOUT_S = 600  # 40-120 s on an idle 2-core machine; much longer while other jobs load it
LOG_TAIL_LINES = 80


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory) -> str:
    """The tiny model with head size 32 (hidden 64, 2 heads, 1 KV head): the smallest vLLM's CPU attention serves."""
    return build_tiny_model(
        tmp_path_factory.mktemp("vllm-model"), hidden_size=64, num_attention_heads=2, num_key_value_heads=1
    )


@dataclass
class Server:
    port: int
    log: Path
    process: subprocess.Popen

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-LOG_TAIL_LINES:])


@pytest.fixture(scope="module")
def vllm_server(vllm_model_dir: str, tmp_path_factory) -> Iterator[Server]:
    """`trl vllm-serve` on a free localhost port, in float32 like the trainer, with the CPU weight-sync extension
    where CUDA is absent; stopped (its whole process group) after the module's tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        str(Path(sys.executable).with_name("trl")),
        "vllm-serve",
        "--model",
        vllm_model_dir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max_model_len",
        "256",
    ]
    if not cuda_available():
        command += ["--worker-extension-cls", EXTENSION]
    with log.open("w") as stream:
        process = subprocess.Popen(
            command,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "VLLM_SERVER_DEV_MODE": "1"},
        )
    server = Server(port, log, process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"`{' '.join(command)}` exited with {process.returncode}:\n{server.tail()}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server was not up after {SERVER_START_TIMEOUT_S} s:\n{server.tail()}")
            time.sleep(2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A failed test that used the server shows the server's log."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("vllm_server")
    if report.failed and isinstance(server, Server):
        report.sections.append(("vLLM server log (tail)", server.tail()))
