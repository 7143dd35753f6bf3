"""Requests to the bucket: status checks, retries with backoff, token refresh,
stall detection, and bodies that resume with Range after a cut connection.

Runtime-neutral: the actual transfer is `_compat.open_url` (browser fetch or
CPython http.client), handed in so tests and benchmarks can count requests.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import random
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Protocol

from .errors import AuthError, Cancelled, HttpError, NetworkError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Response(Protocol):
    status: int
    headers: dict[str, str]   # lower-case names

    async def read(self) -> bytes | None: ...   # next chunk, None at the end
    async def aclose(self) -> None: ...


Opener = Callable[[str, dict[str, str]], Awaitable[Response]]
TokenProvider = Callable[[], "str | None | Awaitable[str | None]"]


@dataclass
class RetryPolicy:
    attempts: int = 6               # tries per request (first one included)
    base_delay: float = 0.5         # seconds, doubled per failure, with full jitter
    max_delay: float = 20.0
    stall_timeout: float = 30.0     # no byte for this long: abort and resume with Range

    def delay(self, failure: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), 300.0)
        cap = min(self.max_delay, self.base_delay * (2 ** (failure - 1)))
        return random.uniform(cap / 2, cap)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_kind(status: int) -> str:
    """What a status means for a request: "ok", "auth" (ask for a token),
    "retry" (worth another try after a wait) or "fatal"."""
    if status in (200, 206):
        return "ok"
    if status in (401, 403):
        return "auth"
    if status in RETRY_STATUSES:
        return "retry"
    return "fatal"


def token_after_refusal(refused: str | None, current: str | None, offered: str | None = None) -> str | None:
    """The token to try next after `refused` was refused, or None to give up.

    `current` is the token in force now: when another request has already
    replaced the refused one, that one is tried (no new provider call). Else
    `offered` is what the provider gave: usable only when it differs from the
    refused token."""
    if current and current != refused:
        return current
    if offered and offered != refused:
        return offered
    return None


class Auth:
    """The bearer token, and where a fresh one comes from when it is refused.

    Shared by every request of a client: refreshes are serialised, and a
    request refused with a token that another request has already replaced
    retries with the replacement instead of asking the provider again."""

    def __init__(self, token: str | None = None, provider: TokenProvider | None = None) -> None:
        self.token = token
        self.provider = provider
        self._lock = asyncio.Lock()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def ensure(self) -> None:
        if self.token is None and self.provider is not None:
            async with self._lock:
                if self.token is None:
                    self.token = await self._ask()

    async def _ask(self) -> str | None:
        if self.provider is None:
            return None
        try:
            value = self.provider()
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:  # noqa: BLE001 - whatever a host's provider raises, a user reads this
            raise AuthError(f"the token provider failed: {_reason(e)}", status=0) from None
        return str(value) if value else None

    async def renew(self, refused: str | None) -> bool:
        """`refused` was refused: True when a different token is now in force."""
        async with self._lock:
            nxt = token_after_refusal(refused, self.token)
            if nxt is None and self.provider is not None:
                nxt = token_after_refusal(refused, self.token, await self._ask())
            if nxt is None:
                return False
            self.token = nxt
            return True


@dataclass
class Traffic:
    """What a client asked for and got: for tests, benchmarks and resume figures."""

    requests: int = 0
    retries: int = 0
    body_bytes: int = 0
    statuses: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)      # seconds slept before each retry
    gated: int = 0            # requests and body reads parked now because the job is paused
    # One record per response when a job dumps (dicomweb-dump's request log): None otherwise.
    log: list[dict] | None = None


class Client:
    def __init__(self, opener: Opener, auth: Auth | None = None, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._opener = opener
        self.auth = auth or Auth()
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self.traffic = Traffic()
        self.gate: asyncio.Event | None = None    # cleared while a job is paused
        self.cancelled = False

    async def _wait_gate(self) -> None:
        if self.cancelled:
            raise Cancelled("the job was cancelled")
        if self.gate is not None and not self.gate.is_set():
            self.traffic.gated += 1
            try:
                await self.gate.wait()
            finally:
                self.traffic.gated -= 1
        if self.cancelled:
            raise Cancelled("the job was cancelled")

    async def open(self, url: str, what: str, start: int = 0, end: int | None = None,
                   accept: str | None = None) -> Response:
        """Open a request, retrying what is worth retrying; raise a named error otherwise."""
        await self.auth.ensure()
        failures = renewals = 0
        while True:
            await self._wait_gate()
            sent = self.auth.token
            headers = self.auth.headers()
            if start or end is not None:
                headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
            if accept:
                headers["Accept"] = accept
            self.traffic.requests += 1
            try:
                # A request whose headers never come is cancelled here, and the
                # opener aborts its fetch: the connection is freed (a browser
                # has only six per host).
                started = time.monotonic()
                resp = await asyncio.wait_for(self._opener(url, headers), self.policy.stall_timeout)
                if self.traffic.log is not None:
                    self.traffic.log.append(_record(url, headers, resp, started))
            except (asyncio.TimeoutError, OSError, NetworkError) as e:
                failures += 1
                if failures >= self.policy.attempts:
                    raise NetworkError(f"{what}: no answer after {failures} tries ({_reason(e)})", url=_safe(url)) from None
                await self._wait(self.policy.delay(failures))
                continue
            status = resp.status
            self.traffic.statuses.append(status)
            kind = retry_kind(status)
            if kind == "ok":
                return resp
            await resp.aclose()
            if kind == "auth":
                # Bounded: a token renewed by another request, then at most one of our own.
                if renewals < 2 and await self.auth.renew(sent):
                    renewals += 1
                    self.traffic.retries += 1
                    continue
                hint = ("the token was refused and the token provider gave no new one"
                        if self.auth.provider else
                        "the token is missing, expired or lacks access; give a fresh token or a token provider")
                raise AuthError(f"{what}: HTTP {status}: {hint}", status=status, url=_safe(url))
            if kind == "retry":
                failures += 1
                if failures >= self.policy.attempts:
                    raise HttpError(f"{what}: HTTP {status} after {failures} tries", status=status, url=_safe(url))
                await self._wait(self.policy.delay(failures, parse_retry_after(resp.headers.get("retry-after"))))
                continue
            if status == 404:
                raise HttpError(f"{what}: not found (HTTP 404)", status=status, url=_safe(url))
            if status == 416:
                raise HttpError(f"{what}: the object is shorter than the metadata says (HTTP 416)",
                                status=status, url=_safe(url))
            raise HttpError(f"{what}: HTTP {status}", status=status, url=_safe(url))

    async def _wait(self, seconds: float) -> None:
        """A retry's wait, recorded: tests and figures read `traffic.waits`."""
        self.traffic.retries += 1
        self.traffic.waits.append(seconds)
        await self._sleep(seconds)

    async def get_bytes(self, url: str, what: str, limit: int, accept: str | None = None) -> bytes:
        """A small whole body (listing page, metadata), bounded by `limit`."""
        out = bytearray()
        async for chunk in self.body(url, what, accept=accept):
            out += chunk
            if len(out) > limit:
                raise HttpError(f"{what}: body is larger than {limit} bytes: refused", status=200, url=_safe(url))
        return bytes(out)

    async def body(self, url: str, what: str, start: int = 0, end: int | None = None,
                   info: dict | None = None, accept: str | None = None,
                   resumable: bool = True) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an object, resuming with Range after cuts and stalls.

        The consumer sees one seamless stream; a server that ignores Range is
        handled by skipping what was already delivered. A body made anew for
        each request (a DICOMweb multipart answer, whose boundary changes) is
        not `resumable`: a cut raises NetworkError and the caller asks again
        for what it did not get.
        """
        pos = start
        failures = reconnects = 0
        while True:
            resp = await self.open(url, what, pos, end, accept)
            window = response_window(resp.status, pos, _content_length(resp))
            if info is not None and "length" not in info:
                info["length"] = window.expected if end is None else end - start   # whole object or range size
                info["content_type"] = resp.headers.get("content-type") or ""
            skip, received = window.skip, window.first
            error: Exception | None = None
            watchdog = _Watchdog(resp, self.policy.stall_timeout)
            try:
                while True:
                    if self.cancelled or (self.gate is not None and not self.gate.is_set()):
                        await self._wait_gate()
                    try:
                        chunk = await watchdog.read()
                    except (OSError, NetworkError) as e:
                        error = e
                        break
                    if chunk is None:
                        break
                    received += len(chunk)
                    if skip:
                        drop = min(skip, len(chunk))
                        chunk, skip = chunk[drop:], skip - drop
                        if not chunk:
                            continue
                    if end is not None and pos + len(chunk) > end:
                        chunk = chunk[: end - pos]
                    pos += len(chunk)
                    self.traffic.body_bytes += len(chunk)
                    failures = 0 if len(chunk) else failures
                    yield chunk
                    if end is not None and pos >= end:
                        return
            finally:
                watchdog.stop()
                await resp.aclose()
            if watchdog.stalled:
                error = NetworkError(f"{what}: no data for {self.policy.stall_timeout:g} s")
            if self.traffic.log is not None and self.traffic.log:
                _finish_record(self.traffic.log, url, received)
            if error is None and body_complete(received, window.expected, pos, end):
                return
            if error is None:
                error = NetworkError(f"{what}: body ended at byte {pos}, expected {window.expected if end is None else end}")
            if not resumable:
                raise NetworkError(f"{what}: transfer cut at byte {pos}: {_reason(error)}", url=_safe(url))
            failures += 1
            reconnects += 1
            # Progress resets `failures`, but a link that dies every few bytes
            # must still end: the total number of reconnects is bounded too.
            if failures >= self.policy.attempts or reconnects >= 4 * self.policy.attempts:
                raise NetworkError(f"{what}: transfer failed {reconnects} times, last at byte {pos}: {_reason(error)}",
                                   url=_safe(url))
            await self._wait(self.policy.delay(failures))


_QUIET_HEADERS = {"authorization", "set-cookie", "cookie"}


def _record(url: str, sent: dict[str, str], resp: Response, started: float) -> dict:
    """A response as dicomweb-dump records it (the token never written)."""
    return {"url": _safe(url), "status": resp.status,
            "request": {k: v for k, v in sent.items() if k.lower() not in _QUIET_HEADERS},
            "headers": {k: v for k, v in resp.headers.items() if k.lower() not in _QUIET_HEADERS},
            "started": time.time(), "ttfb": round(time.monotonic() - started, 4), "ttlb": None, "bytes": None,
            "_t0": started}


def _finish_record(log: list[dict], url: str, received: int) -> None:
    """Time to the last byte, on the last record of `url` still open."""
    safe = _safe(url)
    for rec in reversed(log):
        if rec["url"] == safe and rec["ttlb"] is None:
            rec["ttlb"] = round(time.monotonic() - rec.pop("_t0"), 4)
            rec["bytes"] = received
            return


@dataclass(frozen=True)
class Window:
    """Where one response sits in the object it is part of."""

    skip: int              # leading bytes to drop (a server that ignored Range sends from 0)
    first: int             # object offset of the response's first byte
    expected: int | None   # object offset where the response must end (None: unknown)


def response_window(status: int, pos: int, length: int | None) -> Window:
    """A response to a request for the object from byte `pos` on."""
    if status == 206:
        return Window(0, pos, None if length is None else pos + length)
    return Window(pos, 0, length)


def body_complete(received: int, expected: int | None, pos: int, end: int | None) -> bool:
    """Did a response that ended without an error deliver everything asked for?"""
    return (expected is None or received >= expected) and (end is None or pos >= end)


class _Watchdog:
    """Aborts a response whose pending read gets nothing for `timeout` seconds.

    Only time spent waiting for the server counts: a consumer that is slow
    (a full write pool, a paused job) never makes the server look stalled.
    One timer per response instead of one per chunk read: in the browser
    every asyncio timer is a setTimeout round trip, and chunks come by the
    thousand."""

    def __init__(self, resp: Response, timeout: float) -> None:
        self.resp, self.timeout = resp, timeout
        self.reading_since: float | None = None
        self.stalled = False
        self._task = asyncio.ensure_future(self._watch())

    async def read(self) -> bytes | None:
        self.reading_since = time.monotonic()
        try:
            return await self.resp.read()
        finally:
            self.reading_since = None

    async def _watch(self) -> None:
        step = max(0.1, min(1.0, self.timeout / 4))
        while True:
            await asyncio.sleep(step)
            since = self.reading_since
            if since is not None and time.monotonic() - since > self.timeout:
                self.stalled = True
                await self.resp.aclose()   # the pending read ends with an error
                return

    def stop(self) -> None:
        self._task.cancel()


def _content_length(resp: Response) -> int | None:
    value = resp.headers.get("content-length")
    if value and value.isdigit() and not resp.headers.get("content-encoding"):
        return int(value)
    return None


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _safe(url: str) -> str:
    """URLs go into messages; tokens never do (the project never puts one in a URL,
    but a user-supplied API base might)."""
    return url.split("?", 1)[0] if "token=" in url else url
