"""Browser adapters: fetch streaming, File System Access handles, CRC32C in
WebAssembly. Only thin calls live in JS (`cod_shim`, registered by the page's
module); the decisions stay in Python."""

from __future__ import annotations

from typing import AsyncIterator, Sequence

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]

from ..errors import NetworkError, StorageFullError

try:
    import cod_shim  # type: ignore[import-not-found]  # registered by cod-retrieve.mjs
except ImportError:  # pytest-pyodide and other hosts without the page's module
    cod_shim = None


def _js_obj(d: dict):
    return to_js(d, dict_converter=js.Object.fromEntries)


def to_u8(data) -> "js.Uint8Array":
    """A JS copy of a Python buffer. `Uint8Array.assign` copies at memory speed
    (measured 0.06 ms per 0.5 MB in Chromium), ten times faster than slicing a
    view of the WebAssembly heap or `to_js`."""
    u8 = js.Uint8Array.new(len(data))
    u8.assign(data)
    return u8


def _fetch(url: str, init):
    """fetch, through the shim where there is one: its rejections arrive as
    plain Errors (see cod-shim.mjs: some DOMExceptions kill Pyodide)."""
    return cod_shim.fetchUrl(url, init) if cod_shim is not None else js.fetch(url, init)


def _read(reader):
    return cod_shim.readChunk(reader) if cod_shim is not None else reader.read()


class FetchResponse:
    def __init__(self, resp, controller) -> None:
        self.status = int(resp.status)
        self.headers = {str(p[0]).lower(): str(p[1]) for p in resp.headers.entries()}
        if cod_shim is not None:
            self._reader = cod_shim.bodyReader(resp)
        else:
            self._reader = resp.body.getReader() if resp.body else None
        self._controller = controller

    async def read(self) -> bytes | None:
        if self._reader is None:
            return None
        try:
            r = await _read(self._reader)
        except JsException as e:
            raise NetworkError(f"connection failed: {e}") from None
        if r.done:
            return None
        return r.value.to_bytes()

    async def aclose(self) -> None:
        try:
            self._controller.abort()
        except JsException:
            pass


async def open_url(url: str, headers: dict[str, str]) -> FetchResponse:
    controller = js.AbortController.new()
    try:
        resp = await _fetch(url, _js_obj({"headers": headers, "signal": controller.signal, "cache": "no-store"}))
    except JsException as e:
        raise NetworkError(f"fetch of {url.split('?')[0]} failed: {e}") from None
    except BaseException:
        # Given up on (no headers in time, or the job cancelled): abort the
        # fetch so the browser frees its connection, or six such requests
        # would block every later one to this host.
        controller.abort()
        raise
    return FetchResponse(resp, controller)


class WasmCrc32c:
    """CRC32C in WebAssembly (web/crc32c.wat), reading each buffer where it
    lies in the heap: the running value is all the state a stream keeps."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data) -> None:
        self.value = int(cod_shim.crcUpdate(self.value, data))


def new_crc32c():
    if cod_shim is not None and cod_shim.crcReady():
        return WasmCrc32c()
    from ..crc32c import PureCrc32c
    return PureCrc32c()


def _is_not_found(e: JsException) -> bool:
    return getattr(e, "name", "") in ("NotFoundError", "TypeMismatchError") or "NotFound" in str(e)


def _fs_error(e: JsException, parts: Sequence[str]) -> Exception:
    """One mapping of the browser's file-system errors to Python's."""
    name, message = str(getattr(e, "name", "") or "Error"), str(getattr(e, "message", "") or e)
    where = "/".join(parts) or "the folder"
    if name == "QuotaExceededError":
        return StorageFullError(f"not enough space to write {where}: the browser's storage quota is used up "
                                f"({message}); free some space and download again")
    if _is_not_found(e):
        return FileNotFoundError(f"{where}: {message}")
    return OSError(f"writing {where} failed: {name}: {message}")


class BrowserWriter:
    """A shim Writer (createWritable's swap file, or in a Worker's OPFS a sync
    access handle on a hidden `.part` file moved onto the name): nothing shows
    under the name until commit(), and abort() (or a failed commit) leaves no
    file that was not there before."""

    def __init__(self, parts: tuple[str, ...], writer) -> None:
        self._parts, self._w = parts, writer

    async def write(self, data) -> None:
        try:
            await self._w.write(data)        # the shim copies it, or writes it from the heap, at once
        except JsException as e:
            raise _fs_error(e, self._parts) from None

    async def commit(self) -> None:
        try:
            await self._w.close()
        except JsException as e:
            raise _fs_error(e, self._parts) from None

    async def abort(self) -> None:
        try:
            await self._w.abort()
        except JsException:
            pass


class BrowserFolder:
    """A FileSystemDirectoryHandle (picked folder or OPFS). Every call into the
    file system goes through `cod_shim`, which hands back plain errors."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.name = str(handle.name)
        self._dirs: dict[tuple[str, ...], object] = {(): handle}

    async def _dir(self, parts: Sequence[str], create: bool):
        key = tuple(parts)
        if key in self._dirs:
            return self._dirs[key]
        parent = await self._dir(key[:-1], create)
        try:
            d = await cod_shim.directory(parent, _check(key[-1]), create)
        except JsException as e:
            raise _fs_error(e, key) from None
        self._dirs[key] = d
        return d

    async def _file(self, parts: Sequence[str]):
        try:
            d = await self._dir(parts[:-1], False)
            return await cod_shim.fileHandle(d, _check(parts[-1]))
        except FileNotFoundError:
            return None
        except JsException as e:
            if _is_not_found(e):
                return None
            raise _fs_error(e, parts) from None

    space_label = "the browser's storage for this site"

    async def free_space(self) -> int | None:
        """What the browser lets this site still store, for a folder in its
        origin-private file system; None for a picked folder (its disk is
        not the browser's to tell)."""
        free = await cod_shim.storageFree(self.handle)        # a number, or JS null
        return int(free) if isinstance(free, (int, float)) else None

    async def size(self, parts):
        fh = await self._file(parts)
        return None if fh is None else int(await cod_shim.fileSize(fh))

    async def sizes(self, parts) -> dict[str, int]:
        try:
            d = await self._dir(parts, False)
        except FileNotFoundError:
            return {}
        return {str(k): int(v) for k, v in (await cod_shim.listSizes(d)).to_py().items()}

    async def read_bytes(self, parts, limit):
        fh = await self._file(parts)
        if fh is None:
            return None
        if int(await cod_shim.fileSize(fh)) > limit:
            raise ValueError(f"{'/'.join(parts)} is larger than {limit} bytes")
        return (await cod_shim.readFile(fh)).to_bytes()

    async def iter_bytes(self, parts) -> AsyncIterator[bytes]:
        fh = await self._file(parts)
        if fh is None:
            return
        reader = await cod_shim.fileReader(fh)
        while True:
            r = await cod_shim.readChunk(reader)
            if r.done:
                return
            yield r.value.to_bytes()

    async def create(self, parts):
        key = tuple(parts)
        d = await self._dir(key[:-1], True)
        try:
            return BrowserWriter(key, await cod_shim.openWriter(d, _check(key[-1])))
        except JsException as e:
            raise _fs_error(e, key) from None

    async def write_atomic(self, parts, data) -> None:
        key = tuple(parts)
        d = await self._dir(key[:-1], True)
        try:
            # The buffer itself: the shim writes it from the WebAssembly heap
            # where it can (a sync access handle), else copies it at once.
            await cod_shim.writeFile(d, _check(key[-1]), data)
        except JsException as e:
            raise _fs_error(e, key) from None

    async def remove(self, parts) -> None:
        try:
            d = await self._dir(parts[:-1], False)
            await cod_shim.removeEntry(d, _check(parts[-1]))
        except FileNotFoundError:
            return
        except JsException as e:
            if not _is_not_found(e):
                raise _fs_error(e, parts) from None

    async def list(self, parts) -> list[str]:
        try:
            d = await self._dir(parts, False)
        except FileNotFoundError:
            return []
        return sorted(str(n) for n in await cod_shim.listNames(d))


def _check(part: str) -> str:
    if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
        raise ValueError(f"refusing path segment {part!r}")
    return part


async def private_folder() -> BrowserFolder:
    return BrowserFolder(await js.navigator.storage.getDirectory())


async def deliver_file(folder, parts: Sequence[str], download_name: str, downloads_dir=None) -> str:
    """Hand a finished spool file to the browser's download: the OPFS file as
    a disk-backed `File` behind an object URL and an `<a download>` click
    (never a Blob assembled in memory). The browser reads it asynchronously:
    the caller keeps the file for a while after this returns. Engines with no
    usable OPFS spool in memory (`zipsink.MemoryFolder`, size-limited): their
    chunks become one Blob, handed over the same way."""
    if getattr(folder, "streams_directly", False):   # streamed already (service worker)
        return download_name
    if cod_shim is None or not hasattr(cod_shim, "deliverFile"):
        raise RuntimeError("no page to download from (the cod_shim module is not registered)")
    if hasattr(folder, "pop_chunks"):   # in-memory spool (no OPFS): a Blob, chunk by chunk
        chunks = folder.pop_chunks(parts)
        parts_js = js.Array.new()
        while chunks:
            parts_js.push(to_u8(chunks.pop(0)))
        cod_shim.deliverFile(js.Blob.new(parts_js), download_name)
        return download_name
    if not isinstance(folder, BrowserFolder):
        raise ValueError("zip delivery needs a browser folder (OPFS) or a memory spool")
    fh = await folder._file(parts)
    if fh is None:
        raise FileNotFoundError("/".join(parts))
    cod_shim.deliverFile(await cod_shim.diskFile(fh), download_name)
    return download_name


# ---- Streamed downloads through the service worker (web/cod-sw.js) --------
STREAM_CHUNK = 1 << 20     # bytes per message to the service worker
# Counters for tests and diagnostics: chunks and bytes handed over, and how
# many writes waited for the browser to ask for more (backpressure at work).
STREAM_STATS = {"chunks": 0, "bytes": 0, "waits": 0}


class StreamWriter:
    """One zip streamed into the browser's download: each `write` resolves only
    when the service worker's stream has pulled the previous chunk, so a slow
    disk slows the writer and memory stays at a chunk or two. `commit` ends the
    download; `abort` makes the browser mark it failed."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.url = str(stream.url)
        self._open = True

    def start(self) -> None:
        self._stream.start()

    async def write(self, data) -> None:
        view = memoryview(data).cast("B")
        for i in range(0, len(view), STREAM_CHUNK):
            piece = view[i:i + STREAM_CHUNK]
            waits = int(self._stream.waits)
            try:
                await self._stream.write(to_u8(piece))
            except JsException as e:
                raise OSError(f"streamed download failed: {getattr(e, 'message', e)}") from None
            STREAM_STATS["chunks"] += 1
            STREAM_STATS["bytes"] += len(piece)
            STREAM_STATS["waits"] += int(self._stream.waits) - waits

    async def commit(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            await self._stream.close()
        except JsException as e:
            raise OSError(f"streamed download failed: {getattr(e, 'message', e)}") from None

    async def abort(self) -> None:
        if self._open:
            self._open = False
            self._stream.abort("the zip could not be completed")


class ServiceWorkerDownloads:
    """A zip "spool" that is no spool: `create_download` starts the browser's
    download at once and streams into it. For engines without a usable OPFS;
    chosen before the in-memory spool. Files are never read back."""

    name = "service-worker"
    streams_directly = True

    async def create_download(self, download_name: str, start: bool = True) -> StreamWriter:
        w = StreamWriter(await cod_shim.openStream(download_name))
        if start:
            w.start()
        return w

    async def create(self, parts):
        return await self.create_download(parts[-1])

    async def size(self, parts):
        return None

    async def read_bytes(self, parts, limit):
        return None

    async def iter_bytes(self, parts):
        return
        yield b""  # pragma: no cover

    async def write_atomic(self, parts, data) -> None:
        raise OSError("a streamed download cannot be written at once")

    async def remove(self, parts) -> None:
        return None

    async def list(self, parts) -> list[str]:
        return []


async def service_worker_downloads() -> ServiceWorkerDownloads | None:
    """Streamed downloads, if this page can register cod-sw.js (service
    workers, a secure context, the module on the page's origin)."""
    if cod_shim is None or not hasattr(cod_shim, "openStream") or not cod_shim.serviceWorkerUsable():
        return None
    try:
        await cod_shim.serviceWorker()
    except JsException:
        return None
    return ServiceWorkerDownloads()
