"""Run the real `cod-retrieve` command line in a child process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PY = Path(__file__).resolve().parents[2] / "py"


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PY), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("COD_RETRIEVE_TOKEN", None)
    env.update(extra)
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cod_retrieve", *map(str, args)]


def run_cli(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(*args), env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def events(proc: subprocess.CompletedProcess) -> list[dict]:
    """The `--json` lines of a run, each an object with its `event` name."""
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def last(evts: list[dict], name: str) -> dict:
    found = [e for e in evts if e["event"] == name]
    assert found, f"no {name!r} event in {[e['event'] for e in evts]}"
    return found[-1]
