"""GUI test set-up: QSettings in a temporary .ini file (never the user's), the real clip."""

from __future__ import annotations

import pytest


@pytest.fixture
def qsettings(tmp_path):
    from PyQt5.QtCore import QSettings

    return QSettings(str(tmp_path / "fer-studio.ini"), QSettings.IniFormat)


@pytest.fixture(scope="session")
def clip_path(data_dir):
    return data_dir / "woman2_clip.mp4"
