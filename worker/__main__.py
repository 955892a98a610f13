"""`python -m worker` runs the command line."""

from worker.cli import main

raise SystemExit(main())
