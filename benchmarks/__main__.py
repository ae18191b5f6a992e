"""``python -m benchmarks``: every target of issue 15 in one table (see ``run.py``)."""

from benchmarks.run import main

raise SystemExit(main())
