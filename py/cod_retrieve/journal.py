"""log.json: the original's record of saved instances, kept compatible.

One writer at a time, entries only after verification, and the file replaced
atomically, so concurrent series never lose entries and a crash never leaves
half a JSON document behind.

A folder written in another layout than `classic` also records that layout
(`layout`) and where each instance went (`paths`: log key -> relative path):
the original library reads only `logs`, so the file stays compatible, and a
resumed download finds every file where the first one put it.
"""

from __future__ import annotations

import asyncio
import json
import time

from .folder import Folder

LOG_NAME = ("log.json",)
MAX_LOG_BYTES = 512 * 1024 * 1024


class Journal:
    def __init__(self, folder: Folder, flush_every: float = 2.0, name: tuple[str, ...] = LOG_NAME) -> None:
        self._folder = folder
        self._name = name        # the folder's log.json; a cohort keeps one per study: (<study>, log.json)
        self._entries: dict[str, None] = {}
        self.paths: dict[str, tuple[str, ...]] = {}     # log key -> path parts (layouts other than classic)
        self.layout = "classic"                        # what the folder was written in
        self._dirty = False
        self._lock = asyncio.Lock()
        self._flush_every = flush_every
        self._last_flush = time.monotonic()

    async def load(self) -> None:
        raw = await self._folder.read_bytes(self._name, MAX_LOG_BYTES)
        self._entries, self.paths, self.layout = {}, {}, "classic"
        if raw:
            try:
                doc = json.loads(raw)
                logs = doc.get("logs", [])
            except (ValueError, AttributeError):
                doc, logs = {}, []   # a corrupt log only costs re-verification, never data
            self._entries = {str(e): None for e in logs if isinstance(e, str)}
            if isinstance(doc.get("layout"), str):
                self.layout = doc["layout"]
            paths = doc.get("paths")
            if isinstance(paths, dict):
                self.paths = {k: tuple(v.split("/")) for k, v in paths.items()
                              if k in self._entries and isinstance(v, str) and _plain(v)}

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def add(self, key: str, path: tuple[str, ...] | None = None) -> None:
        """Record a verified instance (in memory: `flush` writes), and where it
        went when the layout is not the classic one."""
        if key not in self._entries:
            self._entries[key] = None
            self._dirty = True
        if path is not None and self.paths.get(key) != tuple(path):
            self.paths[key] = tuple(path)
            self._dirty = True

    def discard(self, key: str) -> None:
        """Forget an instance found not whole (a folder check): the next
        download fetches it again."""
        if key in self._entries:
            del self._entries[key]
            self.paths.pop(key, None)
            self._dirty = True

    async def flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush > self._flush_every:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            self._last_flush = time.monotonic()
            doc: dict = {"logs": list(self._entries)}
            if self.layout != "classic":
                doc["layout"] = self.layout
                doc["paths"] = {k: "/".join(v) for k, v in self.paths.items()}
            body = json.dumps(doc).encode()
            try:
                await self._folder.write_atomic(self._name, body)
            except BaseException:
                self._dirty = True      # the old log stays whole; these entries go next time
                raise


def _plain(path: str) -> bool:
    """A recorded path the folder can hold: relative, no `..`, no empty part."""
    parts = path.split("/")
    return all(p and p not in (".", "..") and "\\" not in p for p in parts)
