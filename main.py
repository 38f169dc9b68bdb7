"""gridwatch from a checkout: `python main.py` opens the window; `python main.py run GRID.toml` etc. the CLI."""

import sys

from gridwatch.gui.app import entry

if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
