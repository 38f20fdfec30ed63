"""Build hook: ship the top-level ui/, models/ and resources/ folders inside the package.

They stay at the top of the checkout (where the forms are edited and the models trained into); a wheel
or a ``pip install .`` gets a copy as ``app/_bundled/<name>``, which app.core.package_data finds through
the package. An editable install needs no copy: it runs from the checkout. Metadata is in setup.cfg.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("ui", "models", "resources")  # kept in step with app/core/package_data.py


class BuildPyWithBundled(build_py):
    """build_py, then copy the bundled folders into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "app" / "_bundled"
        for name in BUNDLED:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"setup.py: the {name}/ folder is missing from {ROOT}; cannot build.")
            shutil.copytree(source, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithBundled})
