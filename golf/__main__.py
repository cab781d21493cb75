"""`python -m golf` runs the same CLI as the `golf` console script (useful where scripts/ is not on PATH)."""

from golf.cli import main

raise SystemExit(main())
