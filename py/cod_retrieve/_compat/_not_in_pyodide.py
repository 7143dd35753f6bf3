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
from pathlib import Path
from typing import AsyncIterator, Sequence
from urllib.parse import urlsplit

from ..crc32c import PureCrc32c
from ..errors import NetworkError, StorageFullError
from ..folder import write_whole

CHUNK = 256 * 1024


class HttpResponse:
    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 sock: socket.socket | None) -> None:
        self._conn = conn
        self._sock = sock       # kept: http.client drops conn.sock once the response owns it
        self._resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    async def read(self) -> bytes | None:
        try:
            data = await asyncio.to_thread(self._resp.read1, CHUNK)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise NetworkError(f"connection failed: {e or type(e).__name__}") from None
        return data or None

    async def aclose(self) -> None:
        # shutdown() wakes a worker thread blocked in recv(); close() alone would not.
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conn.close()


async def open_url(url: str, headers: dict[str, str]) -> HttpResponse:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=120, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def _open() -> HttpResponse:
        try:
            conn.request("GET", target, headers=headers)
            sock = conn.sock
            return HttpResponse(conn, conn.getresponse(), sock)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
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


def new_crc32c():
    """A fast CRC32C where a compiled module is installed, else the reference."""
    try:
        import google_crc32c  # type: ignore[import-not-found]
    except ImportError:
        try:
            import crc32c as _crc  # type: ignore[import-not-found]
        except ImportError:
            return PureCrc32c()
        return _CrcModule(_crc)
    return _GoogleCrc(google_crc32c)


class _GoogleCrc:
    def __init__(self, mod) -> None:
        self._c = mod.Checksum()

    def update(self, data) -> None:
        self._c.update(data if isinstance(data, bytes) else bytes(data))

    @property
    def value(self) -> int:
        return int.from_bytes(self._c.digest(), "big")


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
                                f"free some space and download again to complete the folder")
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

    def _path(self, parts: Sequence[str]) -> Path:
        for p in parts:
            if not p or p in (".", "..") or "/" in p or "\\" in p or "\0" in p:
                raise ValueError(f"refusing path segment {p!r}")
        return self.root.joinpath(*parts)

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
