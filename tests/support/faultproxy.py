"""A small HTTP proxy in front of the real bucket server that injects faults:
cut connections, error bursts, stalls, flipped bytes, held transfers, refused
tokens.

The bucket stays real; only the wire between client and bucket misbehaves.
Each request's path, Range and outcome are recorded so tests can count what
was fetched.

A rule made by :func:`on_path` counts a fault as used only when the fault
really fired: a status fault when it is answered, a body fault (cut, stall,
flip, hold) when the response reached the fault's byte. A matched request that
ends before that byte (aborted by the client, a short range) leaves the rule
armed for the next matching request. ``Fault.at`` places a body fault at a
byte of the *object* instead of the response, so a ranged retry that covers
the byte gets it too."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Callable

from support.loopserver import LoopbackServer


@dataclass
class Fault:
    kind: str                      # "status", "silent", "cut", "stall", "flip", "hold"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0                 # body bytes of the response passed before the fault
    seconds: float = 0.0           # stall: how long the connection is kept silent
    at: int | None = None          # instead of `after`: the object's byte the fault sits at
    release: threading.Event | None = None   # hold: the rest is sent once this is set; cut: cut then
    rule: "PathRule | None" = field(default=None, repr=False, compare=False)
    fired: bool = field(default=False, repr=False, compare=False)   # set on the copy a request got


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    auth: str | None
    status: int = 0
    body_bytes: int = 0
    fault: str | None = None
    # stall: the client hung up before the stall's time was up (True) or sat it
    # out (False); hold: the client hung up while held (True) or was released (False).
    client_closed: bool | None = None
    done: bool = False             # the proxy is finished with this request


Rule = Callable[[Seen, int], "Fault | None"]   # (request, index among matching) -> fault


class FaultProxy(LoopbackServer):
    def __init__(self, upstream_host: str, upstream_port: int, cors: bool = False) -> None:
        """`cors`: answer CORS preflights and mark every response readable by any
        origin, for an upstream that does not (Orthanc, as a DICOMweb server for
        the browser tests, where a real deployment puts a reverse proxy)."""
        self.upstream = (upstream_host, upstream_port)
        self.cors = cors
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.required_token: str | None = None
        self._changed = threading.Condition()
        super().__init__()

    def reset(self) -> None:
        self.rules.clear()
        self.seen.clear()
        self.required_token = None

    # -- waiting on what the proxy saw (from the test's thread) ----------------
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
        """Block until `predicate()` holds; it is checked again whenever a request
        arrives, a fault fires or a response moves on. `timeout` is a safety net."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"proxy: {what or 'condition'} not reached in {timeout} s; "
                                     f"seen: {[(s.path[-60:], s.range, s.status, s.fault) for s in self.seen]}")

    # -- serving ---------------------------------------------------------------
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
        self._notify()
        try:
            await self._serve(seen, headers, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            seen.done = True
            self._notify()
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _serve(self, seen: Seen, headers: dict[str, str], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if self.required_token is not None and seen.method == "GET" and seen.auth != f"Bearer {self.required_token}":
            seen.status, seen.fault = 401, "auth"
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n"
                         b"Access-Control-Allow-Origin: *\r\n\r\n")
            await writer.drain()
            return
        if self.cors and seen.method == "OPTIONS":
            seen.status = 204
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n"
                         b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD\r\n"
                         b"Access-Control-Allow-Headers: authorization, accept, range\r\n"
                         b"Access-Control-Max-Age: 600\r\n\r\n")
            await writer.drain()
            return
        fault = None
        for rule in self.rules:
            fault = rule(seen, len(self.seen) - 1)
            if fault:
                break
        try:
            if fault and fault.kind == "silent":
                # No response headers at all: hold the connection until the client hangs up
                # (or `seconds`, as a safety net), sending nothing.
                seen.fault = "silent"
                _fire(fault)
                seen.client_closed = await _client_hangs_up(reader, fault.seconds or 600.0)
                return
            if fault and fault.kind == "status":
                seen.status, seen.fault = fault.status, "status"
                _fire(fault)
                extra = "".join(f"{k}: {v}\r\n" for k, v in fault.headers.items())
                writer.write(f"HTTP/1.1 {fault.status} Fault\r\nContent-Length: 0\r\nConnection: close\r\n"
                             f"Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Retry-After\r\n"
                             f"{extra}\r\n".encode())
                await writer.drain()
                return
            await self._forward(seen, headers, reader, writer, fault)
        finally:
            if fault is not None and fault.rule is not None and not fault.fired:
                fault.rule.unused()
            self._notify()

    async def _forward(self, seen: Seen, headers: dict[str, str], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, fault: Fault | None) -> None:
        """Relay the request upstream and its response back, applying a body
        fault on the way."""
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        try:
            host = f"{self.upstream[0]}:{self.upstream[1]}"
            out = [f"{seen.method} {seen.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
            out += [f"{k}: {v}" for k, v in headers.items() if k not in ("host", "connection")]
            up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            await up_w.drain()
            resp_head = await up_r.readuntil(b"\r\n\r\n")
            seen.status = int(resp_head.split(b" ", 2)[1])
            offset = _fault_offset(fault, seen.status, resp_head) if fault else None
            if self.cors and b"access-control-allow-origin" not in resp_head.lower():
                resp_head = resp_head[:-2] + b"Access-Control-Allow-Origin: *\r\n\r\n"
            writer.write(resp_head)
            sent = 0
            while True:
                chunk = await up_r.read(64 * 1024)
                if not chunk:
                    break
                if offset is not None and sent + len(chunk) > offset:
                    cut = offset - sent
                    offset = None
                    _fire(fault)
                    if fault.kind == "flip":
                        b = bytearray(chunk)
                        b[cut] ^= 0xFF
                        chunk = bytes(b)
                        seen.fault = "flip"
                    else:
                        writer.write(chunk[:cut])
                        await writer.drain()
                        sent += cut
                        seen.body_bytes = sent
                        seen.fault = fault.kind
                        self._notify()
                        if fault.kind == "stall":
                            seen.client_closed = await _client_hangs_up(reader, fault.seconds)
                            return
                        if fault.kind == "hold":
                            seen.client_closed = await _held(reader, fault.release)
                            if seen.client_closed:
                                return
                            chunk = chunk[cut:]
                        else:                   # "cut", after a hold if it has a release
                            if fault.release is not None:
                                seen.client_closed = await _held(reader, fault.release)
                            return
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                seen.body_bytes = sent
                self._notify()
        finally:
            up_w.close()


def _fire(fault: Fault) -> None:
    """The fault happens now: its rule counts it as used."""
    fault.fired = True
    if fault.rule is not None:
        fault.rule.fired_once()


def _fault_offset(fault: Fault, status: int, resp_head: bytes) -> int | None:
    """Where in this response's body a body fault fires; None: not in this one."""
    if fault.kind == "status" or not 200 <= status < 300:
        return None
    if fault.at is None:
        return fault.after
    start = 0
    if status == 206:
        for line in resp_head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-range:"):
                try:
                    start = int(line.split(":", 1)[1].strip().split(" ", 1)[1].split("-", 1)[0])
                except (IndexError, ValueError):
                    return None
                break
        else:
            return None
    return fault.at - start if fault.at >= start else None


async def _client_hangs_up(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Stay silent for `seconds`, watching the client: True as soon as it closes
    the connection, False if the time is up first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return False
        try:
            data = await asyncio.wait_for(reader.read(64 * 1024), left)
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True
        if not data:
            return True


async def _held(reader: asyncio.StreamReader, release: threading.Event | None) -> bool:
    """Send nothing until `release` is set (from the test's thread): False then;
    True if the client closed the connection first."""
    if release is None:
        raise ValueError("a hold fault needs a release event")
    eof = asyncio.ensure_future(reader.read(64 * 1024))
    try:
        while not release.is_set():
            done, _ = await asyncio.wait({eof}, timeout=0.01)
            if eof in done:
                try:
                    data = eof.result()
                except ConnectionError:
                    return True
                if not data:
                    return True
                eof = asyncio.ensure_future(reader.read(64 * 1024))
        return False
    finally:
        eof.cancel()


def _covers(range_header: str | None, at: int) -> bool:
    """Could a request with this Range header reach the object's byte `at`?"""
    if not range_header or not range_header.startswith("bytes="):
        return True
    first = range_header[len("bytes="):].split(",", 1)[0].strip()
    start, _, end = first.partition("-")
    if not start:                       # suffix range: decided by the response
        return True
    try:
        return int(start) <= at and (not end or at <= int(end))
    except ValueError:
        return True


class PathRule:
    """A fault for the first `times` GET requests whose path ends with `suffix`
    (and, if `ranged` is given, that do or do not carry Range). The fault is
    counted as used when it fires; `fired` says how often it did."""

    def __init__(self, suffix: str, fault: Fault, times: int = 1, ranged: bool | None = None) -> None:
        self.suffix, self.fault, self.times, self.ranged = suffix, fault, times, ranged
        self.fired = 0          # faults that really happened
        self.pending = 0        # handed to requests still under way

    def __call__(self, seen: Seen, _i: int) -> Fault | None:
        path = seen.path.split("?", 1)[0]
        if not path.endswith(self.suffix) or seen.method != "GET":
            return None
        if self.ranged is not None and (seen.range is not None) != self.ranged:
            return None
        if self.fault.at is not None and not _covers(seen.range, self.fault.at):
            return None
        if self.fired + self.pending >= self.times:
            return None
        self.pending += 1
        return dataclasses.replace(self.fault, rule=self)

    def fired_once(self) -> None:
        """The fault handed out has happened."""
        self.pending -= 1
        self.fired += 1

    def unused(self) -> None:
        """The request given this rule's fault is over without it: armed again."""
        self.pending -= 1

    @property
    def spent(self) -> bool:
        return self.fired >= self.times


def on_path(suffix: str, fault: Fault, times: int = 1, ranged: bool | None = None) -> PathRule:
    """Apply `fault` to requests whose path ends with `suffix` until it has fired `times` times."""
    return PathRule(suffix, fault, times, ranged)
