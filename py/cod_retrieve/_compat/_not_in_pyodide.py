"""CPython adapters: http.client in worker threads, a local directory, a
compiled CRC32C. Used by tests, benchmarks and command-line use."""

from __future__ import annotations

import asyncio
import errno
import http.client
import os
import socket
import shutil
import ssl
import tempfile
import threading
import warnings
from pathlib import Path
from typing import AsyncIterator, Sequence
from urllib.parse import urlsplit

from ..crc32c import PureCrc32c
from ..errors import NetworkError, StorageFullError
from ..folder import write_whole

CHUNK = 256 * 1024


class _ConnectionPool:
    """Idle keep-alive connections per (scheme, host, port): a job makes
    hundreds of requests to one host, and a new TCP (and TLS) handshake for
    each costs more than the small ones themselves."""

    def __init__(self, per_host: int = 16) -> None:
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._per_host = per_host
        self._lock = threading.Lock()

    def take(self, key: tuple) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._per_host:
                idle.append(conn)
                return
        conn.close()


_POOL = _ConnectionPool()


class HttpResponse:
    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 sock: socket.socket | None, key: tuple) -> None:
        self._conn = conn
        self._sock = sock       # kept: http.client drops conn.sock once the response owns it
        self._resp = resp
        self._key = key
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    async def read(self) -> bytes | None:
        try:
            data = await asyncio.to_thread(self._resp.read1, CHUNK)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise NetworkError(f"connection failed: {e or type(e).__name__}") from None
        if not data and self._conn is not None:
            # The whole body is read: the connection can carry the next request.
            conn, self._conn = self._conn, None
            if self._resp.will_close:
                conn.close()
            else:
                _POOL.give(self._key, conn)
        return data or None

    async def aclose(self) -> None:
        if self._conn is None:        # read to the end and handed back
            return
        # shutdown() wakes a worker thread blocked in recv(); close() alone would not.
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conn.close()
        self._conn = None


def _new_connection(scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=120, context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=120)


async def open_url(url: str, headers: dict[str, str]) -> HttpResponse:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = (parts.scheme, parts.hostname, parts.port)
    conn = _POOL.take(key)
    reused = conn is not None
    if conn is None:
        conn = _new_connection(parts.scheme, parts.hostname, parts.port)

    def _open() -> HttpResponse:
        nonlocal conn, reused
        while True:
            try:
                conn.request("GET", target, headers=headers)
                sock = conn.sock
                return HttpResponse(conn, conn.getresponse(), sock, key)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused:    # the server closed an idle connection: once more on a new one
                    conn, reused = _new_connection(parts.scheme, parts.hostname, parts.port), False
                    continue
                raise NetworkError(f"connection to {parts.hostname} failed: {e or type(e).__name__}") from None

    try:
        return await asyncio.to_thread(_open)
    except asyncio.CancelledError:
        # Given up on (no headers in time): hang up, so the worker thread
        # blocked in recv() ends now instead of at the socket timeout.
        _hang_up(conn)
        raise


def _hang_up(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _crc32c_backend():
    """The compiled CRC32C: `crc32c` (a dependency: it reads any buffer, so
    no copy), else google-crc32c (bytes only: one copy per chunk); the pure
    reference, about a thousand times slower, only with a warning."""
    try:
        import crc32c as mod  # type: ignore[import-not-found]
        return lambda: _CrcModule(mod)
    except ImportError:
        pass
    try:
        import google_crc32c  # type: ignore[import-not-found]
        if google_crc32c.implementation == "c":
            return _GoogleCrc
    except ImportError:
        pass
    warnings.warn("no compiled CRC32C (pip install crc32c): checking every instance in pure "
                  "Python, which is very slow", RuntimeWarning, stacklevel=3)
    return PureCrc32c


_BACKEND = None


def new_crc32c():
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = _crc32c_backend()
    return _BACKEND()


class _GoogleCrc:
    def __init__(self) -> None:
        import google_crc32c  # type: ignore[import-not-found]
        self._extend = google_crc32c.extend
        self.value = 0

    def update(self, data) -> None:
        self.value = self._extend(self.value, data if isinstance(data, bytes) else bytes(data))


class _CrcModule:
    def __init__(self, mod) -> None:
        self._mod = mod
        self.value = 0

    def update(self, data) -> None:
        self.value = self._mod.crc32c(data, self.value)


def _disk_error(e: OSError, path: Path) -> OSError:
    """A full disk (or quota) becomes the error a job stops on."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"not enough space to write {path}: {e.strerror}; "
                                f"free some space and download again")
    return e


class _LocalWriter:
    def __init__(self, final: Path) -> None:
        self._final = final
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
        self._tmp = Path(tmp)
        self._f = os.fdopen(fd, "wb")

    async def write(self, data) -> None:
        try:
            await asyncio.to_thread(self._f.write, data)
        except OSError as e:
            raise _disk_error(e, self._final) from None

    async def commit(self) -> None:
        def _commit() -> None:
            # Cleans up after itself in the thread: a caller cancelled while this
            # runs (a job stopping) must not leave the .part file behind.
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
                os.replace(self._tmp, self._final)
            except BaseException:
                self._discard()
                raise
        try:
            await asyncio.to_thread(_commit)
        except OSError as e:
            raise _disk_error(e, self._final) from None

    def _discard(self) -> None:
        try:
            self._f.close()       # flushes what is buffered: on a full disk that fails too
        except OSError:
            pass
        finally:
            self._tmp.unlink(missing_ok=True)

    async def abort(self) -> None:
        self._discard()


class LocalFolder:
    """A directory on disk; every name is one checked path segment below it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = self.root.name
        self.path_length = len(str(self.root))    # for the warning on Windows' 260-character paths

    def _path(self, parts: Sequence[str]) -> Path:
        for p in parts:
            if not p or p in (".", "..") or "/" in p or "\\" in p or "\0" in p:
                raise ValueError(f"refusing path segment {p!r}")
        return self.root.joinpath(*parts)

    @property
    def space_label(self) -> str:
        return f"the disk holding {self.root}"

    async def free_space(self) -> int:
        return shutil.disk_usage(self.root).free

    async def size(self, parts):
        try:
            return self._path(parts).stat().st_size
        except FileNotFoundError:
            return None

    async def sizes(self, parts) -> dict[str, int]:
        p = self._path(parts)
        if not p.is_dir():
            return {}
        return {x.name: x.stat().st_size for x in p.iterdir() if x.is_file()}

    async def read_bytes(self, parts, limit):
        p = self._path(parts)
        try:
            if p.stat().st_size > limit:
                raise ValueError(f"{p} is larger than {limit} bytes")
            return p.read_bytes()
        except FileNotFoundError:
            return None

    async def iter_bytes(self, parts) -> AsyncIterator[bytes]:
        with open(self._path(parts), "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    async def create(self, parts):
        p = self._path(parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return _LocalWriter(p)

    async def write_atomic(self, parts, data) -> None:
        await write_whole(self, parts, data)

    async def remove(self, parts) -> None:
        self._path(parts).unlink(missing_ok=True)

    async def list(self, parts) -> list[str]:
        p = self._path(parts)
        return sorted(x.name for x in p.iterdir()) if p.is_dir() else []


async def private_folder() -> LocalFolder:
    """Stand-in for the browser's origin-private file system."""
    return LocalFolder(Path(tempfile.gettempdir()) / "cod-retrieve-private")


def default_downloads_dir() -> Path:
    """Where zips land when no downloads directory is given (CPython only)."""
    return Path(tempfile.gettempdir()) / "cod-retrieve-downloads"


async def deliver_file(folder, parts: Sequence[str], download_name: str,
                       downloads_dir: str | os.PathLike | None = None) -> str:
    """Hand a finished spool file over as `download_name` in the downloads
    directory: moved when it is a local file (the spool is gone after), else
    copied. Replaces a file of that name atomically. Returns the final path."""
    if not download_name or download_name in (".", "..") or "/" in download_name or "\\" in download_name:
        raise ValueError(f"refusing download name {download_name!r}")
    dest_dir = Path(downloads_dir) if downloads_dir is not None else default_downloads_dir()
    dest = dest_dir / download_name

    if isinstance(folder, LocalFolder):
        src = folder._path(parts)

        def _move() -> None:
            dest_dir.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, dest)
            except OSError:   # another filesystem: copy beside the target, then rename
                fd, tmp = tempfile.mkstemp(prefix=f".{download_name}.", suffix=".part", dir=dest_dir)
                with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                    shutil.copyfileobj(inp, out, 1 << 20)
                os.replace(tmp, dest)
                src.unlink(missing_ok=True)
        await asyncio.to_thread(_move)
        return str(dest)

    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{download_name}.", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in folder.iter_bytes(parts):
                await asyncio.to_thread(out.write, chunk)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(dest)
