"""Bucket details and the object names and URLs of the COD layout.

Pure string work: nothing here does I/O, so every URL the package requests is
built, and tested, in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .errors import BucketError
from .uids import check_uid

DEFAULT_API = "https://storage.googleapis.com"

# GCS bucket names: 3-63 characters per dot-separated part, lower case letters,
# digits, dashes, underscores and dots; they must start and end alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class Bucket:
    """Where a COD datastore lives.

    `prefix` is the datastore path inside the bucket without slashes at either
    end; empty means the objects start at `studies/` in the bucket root.
    """

    name: str
    prefix: str = ""
    token: str | None = None
    api_base: str = DEFAULT_API

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _BUCKET.match(self.name) or ".." in self.name:
            raise BucketError(f"bucket name {self.name!r} is not a valid bucket name")
        parts = self.prefix.split("/") if self.prefix else []
        if any(p in ("", ".", "..") for p in parts):
            raise BucketError(f"bucket prefix {self.prefix!r} has an empty, '.' or '..' part")
        api = urlsplit(self.api_base)
        if api.scheme not in ("http", "https") or not api.netloc:
            raise BucketError(f"API base {self.api_base!r} is not an http(s) URL")

    # Object names -----------------------------------------------------------
    def _root(self) -> str:
        return f"{self.prefix}/studies/" if self.prefix else "studies/"

    def series_folder(self, study: str, series: str | None = None) -> str:
        """The listing prefix of a study's series, or one series' folder."""
        check_uid(study, "study UID")
        base = f"{self._root()}{study}/series/"
        if series is None:
            return base
        return f"{base}{check_uid(series, 'series UID')}/"

    def tar_name(self, study: str, series: str) -> str:
        return f"{self._root()}{check_uid(study, 'study UID')}/series/{check_uid(series, 'series UID')}.tar"

    def metadata_name(self, study: str, series: str) -> str:
        return self.series_folder(study, series) + "metadata.json"

    # URLs ------------------------------------------------------------------
    @property
    def _api(self) -> str:
        return self.api_base.rstrip("/")

    def list_url(self, study: str, page_token: str | None = None, page_size: int | None = None) -> str:
        """GCS JSON API listing of a study's series folders (one page)."""
        url = (f"{self._api}/storage/v1/b/{quote(self.name, safe='')}/o"
               f"?prefix={quote(self.series_folder(study), safe='')}&delimiter=%2F")
        if page_size:
            url += f"&maxResults={int(page_size)}"
        if page_token:
            url += f"&pageToken={quote(page_token, safe='')}"
        return url

    def object_url(self, name: str) -> str:
        """Media download through the JSON API (used for metadata.json)."""
        return f"{self._api}/storage/v1/b/{quote(self.name, safe='')}/o/{quote(name, safe='')}?alt=media"

    def metadata_url(self, study: str, series: str) -> str:
        return self.object_url(self.metadata_name(study, series))

    def tar_url(self, study: str, series: str) -> str:
        """Path-style download of a series tar (supports Range)."""
        return f"{self._api}/{quote(self.name, safe='')}/{quote(self.tar_name(study, series), safe='/')}"

    def with_token(self, token: str | None) -> "Bucket":
        return Bucket(self.name, self.prefix, token, self.api_base)

    def __repr__(self) -> str:  # never show the token
        return f"Bucket(name={self.name!r}, prefix={self.prefix!r}, api_base={self.api_base!r}, token={'***' if self.token else None})"


def parse_bucket(details: str | Mapping[str, Any], api_base: str = DEFAULT_API) -> Bucket:
    """Bucket details as the original library took them: a URL string or an object.

    String form: `https://host/<bucket>/<prefix...>?token=t`: the first path
    segment is the bucket, the rest the prefix, to which `/dicomweb` is appended
    (no prefix gives `dicomweb`). `gs://<bucket>/<datastore>` names the
    datastore as the metadata's `uri`s do: the path is the prefix, as given.
    Object form `{bucket, bucketPrefix, token}` is used as given; a null or
    empty prefix means the bucket root.
    """
    if isinstance(details, str) and details.strip().lower().startswith("gs://"):
        return _parse_gs_url(details, api_base)
    if isinstance(details, str):
        return _parse_bucket_url(details, api_base)
    if isinstance(details, Mapping):
        name = details.get("bucket")
        if not name:
            raise BucketError("bucket details have no 'bucket'")
        prefix = details.get("bucketPrefix", details.get("bucket_prefix")) or ""
        if not isinstance(prefix, str):
            raise BucketError(f"bucketPrefix {prefix!r} is not a string")
        token = details.get("token") or None
        api = details.get("apiBase", details.get("api_base")) or api_base
        return Bucket(str(name), prefix.strip("/"), token, api)
    raise BucketError(f"bucket details must be a URL string or an object, not {type(details).__name__}")


def _parse_gs_url(url: str, api_base: str) -> Bucket:
    path = url.strip()[len("gs://"):]
    if "?" in path or "#" in path:
        raise BucketError(f"bucket URL {url!r}: a gs:// URL takes no query (give the token separately)")
    name, _, prefix = path.partition("/")
    if not name:
        raise BucketError(f"bucket URL {url!r} names no bucket (expected gs://<bucket>/<datastore>)")
    return Bucket(name, prefix.strip("/"), None, api_base)


def _parse_bucket_url(url: str, api_base: str) -> Bucket:
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError as e:
        raise BucketError(f"bucket URL {url!r} is malformed: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BucketError(f"bucket URL {url!r} must look like https://host/<bucket>/<prefix>?token=...")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments:
        raise BucketError(f"bucket URL {url!r} names no bucket (expected https://host/<bucket>/...)")
    name, rest = segments[0], segments[1:]
    prefix = "/".join(rest + ["dicomweb"])
    query = parse_qs(parts.query)
    token = (query.get("token") or [None])[0] or None
    return Bucket(name, prefix, token, api_base)
