"""A proxy in front of the real bucket server that pages object listings the
way real GCS does (fake-gcs-server never pages `prefixes`).

Everything is relayed to the bucket server unchanged, except object listings
(`GET /storage/v1/b/<bucket>/o?...`): those are fetched whole from the server
(no `maxResults`, its own pages followed), then served again in pages of
`page_size` entries, items and prefixes sorted together by name and sharing
the page, with an opaque `nextPageToken`. A client's smaller `maxResults` is
honoured; a larger one (or none) gets `page_size` anyway. Every page served is
recorded in `pages`."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import re
import urllib.parse
from dataclasses import dataclass, field

from support.loopserver import LoopbackServer

_LISTING = re.compile(r"^/storage/v1/b/([^/?]+)/o$")


@dataclass
class ListingPage:
    bucket: str
    prefix: str
    delimiter: str | None
    page_token: str | None          # the token the client sent (None: first page)
    max_results: int | None         # what the client asked for
    names: list[str] = field(default_factory=list)     # entries served, items and prefixes
    prefixes: list[str] = field(default_factory=list)
    next_token: str | None = None


class RepagingProxy(LoopbackServer):
    def __init__(self, upstream_host: str, upstream_port: int, page_size: int = 2) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.page_size = page_size
        self.pages: list[ListingPage] = []
        super().__init__()

    def reset(self, page_size: int | None = None) -> None:
        self.pages.clear()
        if page_size is not None:
            self.page_size = page_size

    # -- serving ----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            path, _, query = target.partition("?")
            m = _LISTING.match(path)
            if method == "GET" and m:
                await self._listing(urllib.parse.unquote(m.group(1)), query, headers, writer)
            else:
                await self._relay(method, target, headers, body, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _relay(self, method: str, target: str, headers: dict[str, str], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        try:
            out = [f"{method} {target} HTTP/1.1", f"Host: {self.upstream[0]}:{self.upstream[1]}", "Connection: close"]
            out += [f"{k}: {v}" for k, v in headers.items() if k not in ("host", "connection")]
            up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            await up_w.drain()
            while chunk := await up_r.read(64 * 1024):
                writer.write(chunk)
                await writer.drain()
        finally:
            up_w.close()

    async def _listing(self, bucket: str, query: str, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter")
        token = q.get("pageToken")
        asked = int(q["maxResults"]) if q.get("maxResults", "").isdigit() else None
        page = ListingPage(bucket, prefix, delimiter, token, asked)
        after = None
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                if state["prefix"] != prefix or state["delimiter"] != delimiter:
                    raise ValueError("token of another listing")
                after = state["after"]
            except (ValueError, KeyError, TypeError) as e:
                await self._answer(writer, headers, 400, {"error": {"code": 400, "message": f"bad pageToken: {e}"}})
                return
        status, whole = await asyncio.to_thread(self._fetch_whole, bucket, prefix, delimiter,
                                                headers.get("authorization"))
        if status != 200:
            await self._answer(writer, headers, status, whole)
            return
        entries = sorted([(it["name"], it) for it in whole["items"]] + [(p, None) for p in whole["prefixes"]],
                         key=lambda e: e[0])
        if after is not None:
            entries = [e for e in entries if e[0] > after]
        size = min(self.page_size, asked) if asked else self.page_size
        served, rest = entries[:size], entries[size:]
        doc: dict = {"kind": "storage#objects"}
        items = [it for _, it in served if it is not None]
        page.prefixes = [name for name, it in served if it is None]
        page.names = [name for name, _ in served]
        if items:
            doc["items"] = items
        if page.prefixes:
            doc["prefixes"] = page.prefixes
        if rest:
            page.next_token = base64.urlsafe_b64encode(json.dumps(
                {"prefix": prefix, "delimiter": delimiter, "after": served[-1][0]}).encode()).decode()
            doc["nextPageToken"] = page.next_token
        self.pages.append(page)
        await self._answer(writer, headers, 200, doc)

    def _fetch_whole(self, bucket: str, prefix: str, delimiter: str | None, auth: str | None) -> tuple[int, dict]:
        """The whole listing from the bucket server: its pages followed, prefixes
        de-duplicated (fake-gcs-server repeats them on every page)."""
        items: list[dict] = []
        prefixes: list[str] = []
        token = None
        while True:
            q = {"prefix": prefix}
            if delimiter is not None:
                q["delimiter"] = delimiter
            if token:
                q["pageToken"] = token
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?"
                             + urllib.parse.urlencode(q), headers={"Authorization": auth} if auth else {})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            doc = json.loads(data) if data else {}
            if resp.status != 200:
                return resp.status, doc
            items += doc.get("items", [])
            prefixes += [p for p in doc.get("prefixes", []) if p not in prefixes]
            token = doc.get("nextPageToken")
            if not token:
                return 200, {"items": items, "prefixes": prefixes}

    async def _answer(self, writer: asyncio.StreamWriter, headers: dict[str, str], status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        reason = http.client.responses.get(status, "Status")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                f"Access-Control-Allow-Origin: {headers.get('origin', '*')}\r\nVary: Origin\r\n\r\n")
        writer.write(head.encode("latin-1") + body)
        await writer.drain()


# -- checks shared by the CPython and browser tests -----------------------------
def listings(pages) -> list[list]:
    """The pages served, one list per listing (a listing starts without a token)."""
    out: list[list] = []
    for p in pages:
        if p.page_token is None:
            out.append([])
        out[-1].append(p)
    return out


def check_paged(pages, study, page_size: int, n_listings: int) -> None:
    """Each listing went page by page to the end, every page handed the token
    of the one before, and together they named every series folder once."""
    runs = listings(pages)
    assert len(runs) == n_listings
    want = sorted(f"{study.study_prefix}series/{s}/" for s in study.series)
    entries = 2 * len(study.series)                        # a folder and a tar per series
    for run in runs:
        assert len(run) == math.ceil(entries / page_size) > 1
        assert all(p.prefix == f"{study.study_prefix}series/" and p.delimiter == "/" for p in run)
        assert [p.page_token for p in run[1:]] == [p.next_token for p in run[:-1]]
        assert run[-1].next_token is None
        assert all(len(p.names) <= page_size for p in run)
        assert sorted(x for p in run for x in p.prefixes) == want
