"""The command line: `cod-retrieve download|stats|verify|cohort` (CPython only)."""
