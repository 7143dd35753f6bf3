"""A server process the tests start themselves (fake-gcs-server, Orthanc) on a loopback
port: stopped once, SIGTERM to its process group and SIGKILL if it does not exit in time,
also at interpreter exit."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from pathlib import Path


class ChildServer:
    stop_timeout = 5.0      # seconds between SIGTERM and SIGKILL

    def __init__(self, proc: subprocess.Popen, port: int, root: Path) -> None:
        self._proc = proc
        self.port = port
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        self._stopped = False
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        proc = self._proc
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self._stopped_hook()
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass

    def _stopped_hook(self) -> None:
        """What a subclass cleans up once its process is gone."""

    @property
    def alive(self) -> bool:
        return not self._stopped and self._proc.poll() is None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, root={str(self.root)!r})"
