"""`python -m gridwatch`: the command line (`gridwatch run|devices|report|runs`)."""

import sys

from gridwatch.cli import main

sys.exit(main())
