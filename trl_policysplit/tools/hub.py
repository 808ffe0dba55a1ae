"""Where a model or dataset name points, decided before anything is loaded: a local path, or the model hub.

A name that looks like a path (``./x``, ``../x``, ``/x``, ``~/x``) or names something that exists is local, and a
missing one is reported as a missing path, never as a bad hub id. For a hub name, the endpoint is probed with one
short connection first: without network, huggingface_hub retries every request for about half a minute before it
fails, and prints each retry.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0
_PATH_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")


def looks_local(name: str) -> bool:
    """Whether ``name`` means a local path: it looks like one, or something exists there."""
    return name in (".", "..") or name.startswith(_PATH_PREFIXES) or os.path.exists(os.path.expanduser(name))


def hub_offline() -> bool:
    """huggingface_hub's own offline switch (``HF_HUB_OFFLINE``), as the libraries read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub URL the libraries use (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _address(url: str) -> tuple[str, int]:
    """Host and port that a request to ``url`` connects to first: its proxy's, when one applies."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return proxy_parts.hostname or "", proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def unreachable_reason(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to ``url``'s host (or its proxy) opens within ``timeout`` seconds, else why not.

    The name lookup runs in a daemon thread so that a resolver that hangs cannot hold the caller past the timeout.
    """
    host, port = _address(url)
    if not host:
        return f"no host in {url!r}"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as error:
            outcome.append(error.strerror or str(error) or type(error).__name__)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def cached_snapshot(repo_id: str, repo_type: str = "model") -> str | None:
    """The local directory of ``repo_id``'s cached snapshot, or None when it is not in the hub cache."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a valid repo id
        return None
