"""Where the bundled folders are: ``ui/`` (Qt Designer forms), ``models/`` (default models), ``resources/``.

In a checkout (and an editable install) they are the top-level folders beside the ``app`` package. A
wheel or a ``pip install .`` has no checkout: setup.py's build step copies them into the package as
``app/_bundled/<name>``, and they are found there through the package, wherever it was installed.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

#: The top-level folders shipped with the program (kept in step with setup.py's BUNDLED).
BUNDLED: tuple[str, ...] = ("ui", "models", "resources")


def bundled_dir(name: str) -> Path:
    """The folder ``name`` (one of :data:`BUNDLED`): the installed package's copy, else the checkout's.

    Returns the checkout's path when neither exists, so a caller's "not found" message names a real place.
    """
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled folder {name!r}; expected one of {', '.join(BUNDLED)}")
    packaged = Path(str(resources.files("app"))) / "_bundled" / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / name


def bundled_file(name: str, *parts: str) -> Path:
    """A file inside a bundled folder, e.g. ``bundled_file("ui", "main_window.ui")``."""
    return bundled_dir(name).joinpath(*parts)
