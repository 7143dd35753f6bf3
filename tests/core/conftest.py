"""Core tests: the cod_retrieve package in CPython against real bytes and a real bucket server.

``py/`` is put on sys.path so nothing needs installing.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PY = str(Path(__file__).resolve().parents[2] / "py")
if _PY not in sys.path:
    sys.path.insert(0, _PY)
