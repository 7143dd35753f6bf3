"""The TypeScript declarations (web/cod-retrieve.d.ts, web/cod-retrieve-element.d.ts)
checked with the project's pinned tsc: the original README's usage example and a
portal's use of the element compile under --strict; wrong uses do not."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "node_modules" / ".bin" / "tsc"
TYPES = ROOT / "tests" / "types"
FLAGS = ["--noEmit", "--strict", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler",
         "--lib", "es2022,dom,dom.iterable", "--types", ""]

pytestmark = pytest.mark.skipif(not TSC.exists(), reason="node_modules/.bin/tsc missing (python3 build.py setup)")


def tsc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TSC), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_original_readme_example_and_element_type_check():
    r = tsc("-p", str(TYPES / "tsconfig.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = (TYPES / "tsconfig.json").read_text()
    assert '"strict": true' in cfg and "original-example.ts" in cfg


def test_wrong_uses_fail_type_check():
    sample = TYPES / "wrong-usage.ts"
    wrong_lines = {i for i, line in enumerate(sample.read_text().splitlines(), 1) if "// WRONG" in line}
    assert len(wrong_lines) >= 5
    r = tsc(*FLAGS, str(sample.relative_to(ROOT)))
    assert r.returncode != 0
    flagged = {int(m.group(1)) for m in re.finditer(r"wrong-usage\.ts\((\d+),\d+\): error TS\d+", r.stdout)}
    assert flagged == wrong_lines, r.stdout
    assert "Property 'initBuckett' does not exist" in r.stdout
