"""Writing files safely: a temporary name in the same folder, then an atomic rename over the target.

A crash, a kill or a full disk therefore never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.core.errors import OutputError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "the file") -> Path:
    """Write ``data`` to ``path`` atomically; raises OutputError naming ``what`` on failure."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as exc:
        raise OutputError(f"{target}: cannot write {what} ({exc.strerror or exc}). "
                          "Choose a writable output folder.") from exc
    return target
