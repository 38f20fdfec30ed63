"""The source combo box: cameras found, the demo clip, chosen video files and stream URLs.

Each item's data is a :class:`SourceSpec` text ("camera:0", "file:/path", "stream:rtsp://..."), or one of
the two choosers. The last source and the recent files and URLs are remembered in the settings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PyQt5.QtWidgets import QComboBox, QFileDialog, QInputDialog, QWidget

from app.core.sources import DEMO_CLIP, SourceKind, SourceSpec

logger = logging.getLogger(__name__)

CHOOSE_FILE = "choose:file"
CHOOSE_STREAM = "choose:stream"
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
MAX_RECENT_SOURCES = 5


class SourcePicker:
    """Fills and reads the source combo; asks for a file or URL when a chooser item is picked."""

    def __init__(self, combo: QComboBox, settings: Any, parent: QWidget) -> None:
        self.combo = combo
        self.settings = settings
        self.parent = parent
        self.cameras: list[int] = []
        value = settings.qs.value("source/recent", [])
        self.recent: list[str] = [value] if isinstance(value, str) else [str(v) for v in (value or [])]
        self._rebuild(settings.get_str("source/last", ""))

    def _rebuild(self, keep: str | None = None) -> None:
        keep = keep if keep is not None else self.combo.currentData()
        self.combo.clear()
        for index in self.cameras:
            self.combo.addItem(f"Camera {index}", SourceSpec.camera(index).to_text())
        if DEMO_CLIP.is_file():
            self.combo.addItem("Demo clip", SourceSpec.file(DEMO_CLIP).to_text())
        for text in self.recent:
            spec = SourceSpec.parse(text)
            if spec.kind is SourceKind.FILE and not Path(str(spec.target)).is_file():
                continue
            if spec.kind is not SourceKind.CAMERA and self.combo.findData(text) < 0:
                self.combo.addItem(spec.describe(), text)
        self.combo.addItem("Video file…", CHOOSE_FILE)
        self.combo.addItem("Stream URL…", CHOOSE_STREAM)
        index = self.combo.findData(keep) if keep else -1
        if index < 0 and self.cameras:
            index = 0
        if index < 0:
            index = max(0, self.combo.findData(SourceSpec.file(DEMO_CLIP).to_text()))
        self.combo.setCurrentIndex(index)

    def set_cameras(self, cameras: list[int]) -> None:
        self.cameras = list(cameras)
        self._rebuild()

    def select(self, spec: SourceSpec) -> None:
        """Make ``spec`` the current item (adding it to the recent list when it is a file or stream)."""
        text = spec.to_text()
        if spec.kind is not SourceKind.CAMERA and Path(str(spec.target)) != DEMO_CLIP:
            self.recent = [text] + [t for t in self.recent if t != text][: MAX_RECENT_SOURCES - 1]
        if self.combo.findData(text) < 0:
            self._rebuild(text)
            if self.combo.findData(text) < 0:  # e.g. a camera not (yet) listed
                self.combo.insertItem(0, spec.describe(), text)
        self.combo.setCurrentIndex(self.combo.findData(text))
        self.settings.set("source/last", text)

    def current_spec(self) -> SourceSpec | None:
        data = self.combo.currentData()
        if data == CHOOSE_FILE:
            return self.choose_file()
        if data == CHOOSE_STREAM:
            return self.choose_stream()
        return SourceSpec.parse(data) if data else None

    def on_activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        spec = None
        if data == CHOOSE_FILE:
            spec = self.choose_file()
        elif data == CHOOSE_STREAM:
            spec = self.choose_stream()
        if spec is not None:
            self.select(spec)
        elif data in (CHOOSE_FILE, CHOOSE_STREAM):
            self._rebuild(self.settings.get_str("source/last", ""))

    def choose_file(self) -> SourceSpec | None:
        patterns = " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
        folder = self.settings.folder("videos")
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open a video file", folder,
                                              f"Videos ({patterns});;All files (*)")
        if not path:
            return None
        self.settings.remember_folder("videos", path)
        return SourceSpec.file(path)

    def choose_stream(self) -> SourceSpec | None:
        last = next((t for t in self.recent if t.startswith("stream:")), "stream:rtsp://")
        url, ok = QInputDialog.getText(self.parent, "Open a stream", "Stream URL (RTSP, HTTP, …):",
                                       text=last[len("stream:"):])
        url = url.strip()
        if not ok or not url:
            return None
        return SourceSpec.stream(url) if "://" in url else SourceSpec.parse(url)

    def save(self) -> None:
        self.settings.set("source/recent", self.recent)
        data = self.combo.currentData()
        if data and not str(data).startswith("choose:"):
            self.settings.set("source/last", data)
