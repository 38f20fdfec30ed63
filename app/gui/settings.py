"""Typed access to the application's QSettings (organisation and application "FER Studio").

Keys: model/path, model/recent, source/last, source/loop, recognition/detector, recognition/align,
recognition/tta, recognition/smoothing, folders/<kind>, window/geometry, window/state, window/splitter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QByteArray, QSettings

logger = logging.getLogger(__name__)

ORGANISATION = "FER Studio"
APPLICATION = "FER Studio"
MAX_RECENT = 8


class AppSettings:
    """Wraps a QSettings; pass one in (tests use an .ini file in a temporary folder)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qs = settings if settings is not None else QSettings(ORGANISATION, APPLICATION)

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.qs.value(key, default)
        if isinstance(value, str):  # .ini files store booleans as text
            return value.lower() in ("true", "1", "yes")
        return bool(value)

    def get_str(self, key: str, default: str = "") -> str:
        value = self.qs.value(key, default)
        return str(value) if value is not None else default

    def set(self, key: str, value: Any) -> None:
        self.qs.setValue(key, value)

    def get_bytes(self, key: str) -> QByteArray | None:
        value = self.qs.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    # ---------------------------------------------------------------------------------- recent models

    def recent_models(self) -> list[str]:
        value = self.qs.value("model/recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [str(p) for p in items if p and Path(str(p)).is_file()]

    def add_recent_model(self, path: str) -> list[str]:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_models() if Path(p).resolve() != Path(path)]
        recent = recent[:MAX_RECENT]
        self.qs.setValue("model/recent", recent)
        return recent

    # ------------------------------------------------------------------------------------------ folders

    def folder(self, kind: str) -> str:
        folder = self.get_str(f"folders/{kind}", "")
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    def remember_folder(self, kind: str, path: str) -> None:
        p = Path(path)
        self.qs.setValue(f"folders/{kind}", str(p if p.is_dir() else p.parent))

    def sync(self) -> None:
        self.qs.sync()
