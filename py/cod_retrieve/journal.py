"""log.json: the original's record of saved instances, kept compatible.

One writer at a time, entries only after verification, and the file replaced
atomically, so concurrent series never lose entries and a crash never leaves
half a JSON document behind.
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
        self._dirty = False
        self._lock = asyncio.Lock()
        self._flush_every = flush_every
        self._last_flush = time.monotonic()

    async def load(self) -> None:
        raw = await self._folder.read_bytes(self._name, MAX_LOG_BYTES)
        self._entries = {}
        if raw:
            try:
                logs = json.loads(raw).get("logs", [])
            except (ValueError, AttributeError):
                logs = []   # a corrupt log only costs re-verification, never data
            self._entries = {str(e): None for e in logs if isinstance(e, str)}

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str) -> None:
        """Record a verified instance (in memory: `flush` writes)."""
        if key not in self._entries:
            self._entries[key] = None
            self._dirty = True

    def discard(self, key: str) -> None:
        """Forget an instance found not whole (a folder check): the next
        download fetches it again."""
        if key in self._entries:
            del self._entries[key]
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
            body = json.dumps({"logs": list(self._entries)}).encode()
            try:
                await self._folder.write_atomic(self._name, body)
            except BaseException:
                self._dirty = True      # the old log stays whole; these entries go next time
                raise
