"""Packaged data: the demo grid and the app icon (a real folder: wheels install unzipped)."""

from importlib import resources
from pathlib import Path

FOLDER = Path(str(resources.files(__name__)))
DEMO_GRID = FOLDER / "demo.toml"
ICON = FOLDER / "gridwatch.svg"
# The icon rendered from ICON at the sizes desktops ask for (hicolor's usual NxN folders).
ICON_SIZES = (16, 32, 48, 64, 128, 256)
ICON_PNGS = {size: FOLDER / "icons" / f"gridwatch-{size}.png" for size in ICON_SIZES}
