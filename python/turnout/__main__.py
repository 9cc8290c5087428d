"""``python -m turnout``: the same command line as the ``turnout`` script."""

from turnout.cli import main

raise SystemExit(main())
