"""`python -m gridwatch`: the command line (`gridwatch run|devices|report|runs`)."""

from gridwatch.cli import exit_after

exit_after()
