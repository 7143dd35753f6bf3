"""The face the JS module talks to: converts JS values in and payloads out.
Only imported inside Pyodide."""

from __future__ import annotations

from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsProxy, to_js  # type: ignore[import-not-found]

from ._compat._in_pyodide import STREAM_STATS, BrowserFolder, to_u8
from .download import CodDownload
from .errors import CodError
from .http import RetryPolicy
from .job import Job
from .manifest import read_manifest


def _js(value: Any):
    return to_js(value, dict_converter=js.Object.fromEntries)


def _save_payload(payload: dict[str, Any]):
    """onSave's `file.buffer` is an ArrayBuffer, as js-untar's: one copy of
    the bytes just written, made only for a listener, dropped after it."""
    file = dict(payload["file"])
    data = file.pop("buffer", None)
    out = _js({**payload, "file": file})
    if data is not None:
        out.file.buffer = to_u8(data).buffer
    return out


def _py(value: Any) -> Any:
    return value.to_py() if isinstance(value, JsProxy) else value


def _series(options) -> list[str] | None:
    """`{series: [uid, ...]}` from JS: the series to take; None: whole studies."""
    series = (_py(options) or {}).get("series")
    return None if series is None else [str(s) for s in series]


def _layout(options) -> str | None:
    """`{layout}` from JS; None: the one given at creation."""
    return (_py(options) or {}).get("layout") or None


def _dump(options):
    """`{dump: true | "frames"}` from JS (DICOMweb)."""
    value = (_py(options) or {}).get("dump")
    return None if value is None else ("frames" if value == "frames" else bool(value))


def _manifest(options) -> bool | None:
    value = (_py(options) or {}).get("manifest")
    return None if value is None else bool(value)


class BrowserJob:
    def __init__(self, job: Job) -> None:
        self.job = job

    def on(self, event: str, callback) -> None:
        convert = _save_payload if event == "save" else _js
        self.job.on(event, lambda payload: callback(convert(payload)))

    async def start(self):
        return _js(await self.job.start())

    def cancel(self) -> None:
        self.job.cancel()

    def pause(self) -> None:
        self.job.pause()

    def resume(self) -> None:
        self.job.resume()

    @property
    def state(self) -> str:
        return self.job.state

    def traffic(self):
        """What the job asked of the network; `stream`: bytes and chunks handed to
        service-worker streamed downloads so far on this page, and how often a write
        waited for the browser (backpressure)."""
        t = self.job.client.traffic
        return _js({"requests": t.requests, "retries": t.retries, "bodyBytes": t.body_bytes, "gated": t.gated,
                    "stream": dict(STREAM_STATS)})


BROWSER_WRITES_IN_FLIGHT = 32


class BrowserCodDownload:
    def __init__(self, options: dict[str, Any]) -> None:
        get_token = options.get("getToken")
        retry = RetryPolicy(**{k: v for k, v in (options.get("retry") or {}).items()
                               if k in RetryPolicy.__dataclass_fields__})
        job_options = {k: options[k] for k in ("instance_retries", "writes_in_flight") if k in options}
        # A browser's file calls each wait on the browser process: with more of them in flight
        # (the bytes in flight stay bounded by the write pool) folder mode kept pace with
        # plain JS on 2x600 (bench/README.md), where 8 fell behind.
        job_options.setdefault("writes_in_flight", BROWSER_WRITES_IN_FLIGHT)
        self.cd = CodDownload(options.get("apiBase") or "https://storage.googleapis.com",
                              int(options.get("concurrency") or 3),
                              token_provider=(lambda: get_token()) if get_token else None,
                              retry=retry, layout=options.get("layout") or None,
                              manifest=bool(options.get("manifest")), **job_options)
        # Where zips are built: "opfs" | "service-worker" | "memory"; unset: the best available.
        self.cd.zip_spool = options.get("zipSpool") or None

    async def set_directory(self, handle) -> None:
        await self.cd.init_directory(BrowserFolder(handle))

    def init_bucket(self, details) -> None:
        self.cd.init_bucket(_py(details))

    def init_source(self, details) -> None:
        self.cd.init_source(_py(details))

    async def get_stats(self, uids, options=None):
        return _js(await self.cd.get_stats(list(_py(uids)), series=_series(options), layout=_layout(options)))

    async def thumbnail(self, study, series):
        """`{type, bytes}` of the series thumbnail, or None where there is none."""
        found = await self.cd.thumbnail(str(study), str(series))
        if found is None:
            return None
        data, media_type = found
        out = _js({"type": media_type})
        out.bytes = to_u8(data)
        return out

    async def verify_folder(self, uids, options=None):
        return _js((await self.cd.verify_folder(list(_py(uids)), series=_series(options))).to_dict())

    async def download(self, uids, zip_output: bool = False, options=None) -> BrowserJob:
        return BrowserJob(await self.cd.download(list(_py(uids)), bool(zip_output), series=_series(options),
                                                 layout=_layout(options), manifest=_manifest(options),
                                                 dump=_dump(options)))


def read_manifest_text(text: str, name: str = "manifest"):
    """A shared selection (a CSV with StudyInstanceUID / SeriesInstanceUID
    columns, as IDC's and TCIA's exports, or one study UID per line) as
    `{studies, series}`; `series` undefined for whole studies."""
    sel = read_manifest(str(text), str(name))
    return _js({"studies": sel.studies, "series": sel.series})


def create(options=None) -> BrowserCodDownload:
    return BrowserCodDownload(_py(options) or {})


__all__ = ["create", "BrowserCodDownload", "BrowserJob", "CodError"]
