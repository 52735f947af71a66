"""`python -m components ...`: the offline CLI (no Pulumi engine needed)."""

from components.cli import main

raise SystemExit(main())
