"""The main window's "Analyze video file…" action: choose a video, then analyse it in the background.

The window creates one :class:`AnalysisLauncher`; it adds the action to a menu and opens an
:class:`~app.gui.analysis_dialog.AnalysisDialog` per video, with the window's current model, detector and
options, writing under a remembered results folder (default: ``~/FER Studio analyses``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PyQt5.QtWidgets import QAction, QFileDialog, QMenu, QWidget

from app.core.analysis.video import VIDEO_SUFFIXES
from app.gui.analysis_dialog import AnalysisDialog
from app.gui.errors import show_error
from app.gui.settings import AppSettings
from app.workers.analysis_process import AnalysisRequest

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path.home() / "FER Studio analyses"


class AnalysisLauncher:
    """Owns the action and the open analysis dialogs (several videos may be analysed at once)."""

    def __init__(self, parent: QWidget, settings: AppSettings, menu: QMenu, *,
                 model: Callable[[], str | None], options: Callable[[], dict[str, Any]],
                 before: QAction | None = None) -> None:
        self.parent = parent
        self.settings = settings
        self._model = model
        self._options = options
        self.dialogs: list[AnalysisDialog] = []
        self.action = QAction("Analyze video file…", parent)
        self.action.setStatusTip("Every face in every frame of a video file: CSV, report and charts")
        self.action.triggered.connect(self._on_action_triggered)
        if before is not None:
            menu.insertAction(before, self.action)
        else:
            menu.addAction(self.action)

    @property
    def out_folder(self) -> str:
        return self.settings.get_str("analysis/out", str(DEFAULT_OUT))

    def _on_action_triggered(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(VIDEO_SUFFIXES))
        path, _ = QFileDialog.getOpenFileName(self.parent, "Analyze video file", self.settings.folder("analysis"),
                                              f"Videos ({patterns});;All files (*)")
        if path:
            self.settings.remember_folder("analysis", path)
            self.analyze(path)

    def analyze(self, video: str, out: str | None = None) -> AnalysisDialog | None:
        """Open a dialog analysing ``video`` into ``out`` (default: the remembered results folder)."""
        options = self._options()
        size = options.get("video_size")
        request = AnalysisRequest(video=str(video), out=str(out or self.out_folder), model=self._model(),
                                  detector=options.get("detector"), tta=options.get("tta") or "none",
                                  detect_size=None if size is None else int(size),
                                  min_face_size=int(options.get("min_face_size") or 0),
                                  min_score=float(options.get("min_score") or 0.0),
                                  align=bool(options.get("align")),
                                  uncertain_below=options.get("uncertain_below"))
        try:
            dialog = AnalysisDialog(request, self.parent)
        except RuntimeError as exc:
            show_error(self.parent, f"Cannot start the analysis: {exc}", "Analyze video file")
            return None
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.show()
        return dialog

    def shutdown(self) -> None:
        """Stop every running analysis (the window is closing)."""
        for dialog in self.dialogs:
            dialog.process.shutdown()
