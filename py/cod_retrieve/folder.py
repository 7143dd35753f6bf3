"""What the core needs from a place that holds files (a picked folder, OPFS, a
local directory). Implementations live in `cod_retrieve._compat`."""

from __future__ import annotations

from typing import AsyncIterator, Protocol, Sequence

Parts = Sequence[str]


class FileWriter(Protocol):
    """A file being written: invisible under its name until `commit()`."""

    async def write(self, data: bytes | bytearray | memoryview) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class Folder(Protocol):
    name: str

    async def size(self, parts: Parts) -> int | None: ...
    async def sizes(self, parts: Parts) -> dict[str, int]: ...   # file name -> size, one call per folder
    async def read_bytes(self, parts: Parts, limit: int) -> bytes | None: ...
    def iter_bytes(self, parts: Parts) -> AsyncIterator[bytes]: ...
    async def create(self, parts: Parts) -> FileWriter: ...
    async def write_atomic(self, parts: Parts, data: bytes | bytearray) -> None: ...
    async def remove(self, parts: Parts) -> None: ...
    async def list(self, parts: Parts) -> list[str]: ...


async def free_space(folder: object) -> int | None:
    """Bytes the folder can still take, where it can tell (`free_space()` on
    the adapter: a local disk, the origin-private file system's quota); None
    where nobody can (a picked folder: the browser says nothing of its disk)."""
    ask = getattr(folder, "free_space", None)
    return None if ask is None else await ask()


def space_label(folder: object) -> str:
    """How a shortfall names the place: the adapter's `space_label`, else the folder."""
    return getattr(folder, "space_label", None) or f"the folder {getattr(folder, 'name', '')!r}"


async def write_whole(folder: Folder, parts: Parts, data: bytes | bytearray) -> None:
    """Write a file through `create`: committed whole, or aborted and absent."""
    writer = await folder.create(parts)
    try:
        await writer.write(data)
    except BaseException:
        await writer.abort()
        raise
    await writer.commit()
