"""A small HTTP proxy in front of the real bucket server that injects faults:
cut connections, error bursts, stalls, flipped bytes, refused tokens.

The bucket stays real; only the wire between client and bucket misbehaves.
Each request's path, Range and outcome are recorded so tests can count what
was fetched."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Fault:
    kind: str                      # "status", "cut", "stall", "flip"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0                 # body bytes passed before the fault
    seconds: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    auth: str | None
    status: int = 0
    body_bytes: int = 0
    fault: str | None = None


Rule = Callable[[Seen, int], "Fault | None"]   # (request, index among matching) -> fault


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.required_token: str | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def shutdown() -> None:
            # Connections still open (a stall still sleeping) end here, not in the GC.
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def reset(self) -> None:
        self.rules.clear()
        self.seen.clear()
        self.required_token = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        seen = Seen(method, path, headers.get("range"), headers.get("authorization"))
        self.seen.append(seen)
        try:
            await self._serve(seen, headers, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _serve(self, seen: Seen, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        if self.required_token is not None and seen.method == "GET" and seen.auth != f"Bearer {self.required_token}":
            seen.status, seen.fault = 401, "auth"
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n"
                         b"Access-Control-Allow-Origin: *\r\n\r\n")
            await writer.drain()
            return
        fault = None
        for rule in self.rules:
            fault = rule(seen, len(self.seen) - 1)
            if fault:
                break
        if fault and fault.kind == "status":
            seen.status, seen.fault = fault.status, "status"
            extra = "".join(f"{k}: {v}\r\n" for k, v in fault.headers.items())
            writer.write(f"HTTP/1.1 {fault.status} Fault\r\nContent-Length: 0\r\nConnection: close\r\n"
                         f"Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Retry-After\r\n"
                         f"{extra}\r\n".encode())
            await writer.drain()
            return
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        host = f"{self.upstream[0]}:{self.upstream[1]}"
        out = [f"{seen.method} {seen.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        out += [f"{k}: {v}" for k, v in headers.items() if k not in ("host", "connection")]
        up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        await up_w.drain()
        resp_head = await up_r.readuntil(b"\r\n\r\n")
        seen.status = int(resp_head.split(b" ", 2)[1])
        writer.write(resp_head)
        sent = 0
        try:
            while True:
                chunk = await up_r.read(64 * 1024)
                if not chunk:
                    break
                if fault and sent + len(chunk) > fault.after:
                    cut = fault.after - sent
                    if fault.kind == "flip":
                        b = bytearray(chunk)
                        b[cut] ^= 0xFF
                        chunk = bytes(b)
                        fault = None
                        seen.fault = "flip"
                    else:
                        writer.write(chunk[:cut])
                        await writer.drain()
                        sent += cut
                        seen.body_bytes = sent
                        seen.fault = fault.kind
                        if fault.kind == "stall":
                            await asyncio.sleep(fault.seconds)
                        return
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                seen.body_bytes = sent
        finally:
            up_w.close()


def on_path(suffix: str, fault: Fault, times: int = 1, ranged: bool | None = None) -> Rule:
    """Apply `fault` to the first `times` requests whose path ends with `suffix`."""
    count = {"n": 0}

    def rule(seen: Seen, _i: int) -> Fault | None:
        path = seen.path.split("?", 1)[0]
        if not path.endswith(suffix) or seen.method != "GET":
            return None
        if ranged is not None and (seen.range is not None) != ranged:
            return None
        if count["n"] >= times:
            return None
        count["n"] += 1
        return fault
    return rule
