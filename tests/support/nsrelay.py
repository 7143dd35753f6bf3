"""A TCP relay from 127.0.0.1 (a free port) into another process's network namespace.

For servers that cannot be told to listen on loopback only (Orthanc 1.10 binds every
interface): they run in a network namespace of their own, where loopback is the only
interface, and this relay's dialing thread enters that namespace (`setns`), so the sockets
it opens reach them; the accepted side stays in the host's namespace, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
from concurrent.futures import ThreadPoolExecutor

from .loopserver import LoopbackServer

CLONE_NEWNET = 0x40000000


class NamespaceRelay(LoopbackServer):
    def __init__(self, pid: int, target_port: int) -> None:
        self.target_port = target_port
        self._ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        self._dialer = ThreadPoolExecutor(2, initializer=self._enter)
        super().__init__()

    def _enter(self) -> None:
        """Runs on each dialing thread: that thread's new sockets live in the namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(self._ns, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the server's network namespace: {os.strerror(err)}")

    def _dial(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        sock.setblocking(False)
        return sock

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = await asyncio.get_running_loop().run_in_executor(self._dialer, self._dial)
            up_r, up_w = await asyncio.open_connection(sock=sock)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(256 * 1024):
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                try:
                    dst.close()
                except Exception:  # noqa: BLE001
                    pass

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def stop(self) -> None:
        super().stop()
        self._dialer.shutdown(wait=False)
        os.close(self._ns)
