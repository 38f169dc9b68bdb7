"""gridwatch from a checkout: `python main.py run resources/demo.toml`, `python main.py devices`, ..."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
