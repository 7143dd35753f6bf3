"""Run the real `cod-retrieve` command line in a child process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def held_child(release: threading.Event, *args: str) -> Iterator[subprocess.Popen]:
    """The command line as a child whose transfer the proxy holds until
    `release`: afterwards the hold is released and the child never outlives the test."""
    child = subprocess.Popen(cli_argv(*args), env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        yield child
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
            child.communicate()
