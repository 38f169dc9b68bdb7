"""`python -m gridwatch.worker`: one slot's long-lived worker process (started by the parent, not by users)."""

from gridwatch.worker.main import main

main()
