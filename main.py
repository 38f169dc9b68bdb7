"""gridwatch from a checkout: `python main.py` opens the window; `python main.py run GRID.toml` etc. the CLI.

The checkout's folders become the `gridwatch` package only once installed (`make install`, which does
`pip install -e .`): workers import it too, so there is no path trick here.
"""

import sys

try:
    from gridwatch.gui.app import entry
except ImportError as exc:
    sys.exit(f"gridwatch is not installed in this Python ({exc}): run `make install` or `pip install -e .` first")

if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
