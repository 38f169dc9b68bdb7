"""Packaged data: the demo grid and the app icon (a real folder: wheels install unzipped)."""

from importlib import resources
from pathlib import Path

FOLDER = Path(str(resources.files(__name__)))
DEMO_GRID = FOLDER / "demo.toml"
ICON = FOLDER / "gridwatch.svg"
