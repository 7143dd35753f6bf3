"""`python -m cod_retrieve ...`: the same as the `cod-retrieve` command."""

from .cli.main import main

raise SystemExit(main())
