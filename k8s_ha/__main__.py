"""`python -m k8s_ha ...`: the command-line interface."""

from k8s_ha.cli.main import main

raise SystemExit(main())
