"""Where expensive results live between runs, and the content hashes that key them.

Like the Hugging Face cache: ``$LATENCYSOLVER_CACHE`` if set, else ``$XDG_CACHE_HOME/latencysolver``, else
``~/.cache/latencysolver``; the CLI's ``--cache-dir`` wins over all of them.  A key is the SHA-256 of
everything the result depends on, so a changed input is a cache miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

ENV_VAR = "LATENCYSOLVER_CACHE"


def cache_root(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "latencysolver"


def content_hash(*parts: Any) -> str:
    """Stable hash of JSON-able parts (dicts are key-sorted); 16 hex digits are plenty for a cache key."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
