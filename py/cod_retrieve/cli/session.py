"""What every command reads from its arguments: the bucket and the selection."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..archive_source import ArchiveSource, parse_archive
from ..bucket import Bucket, parse_bucket
from ..dicomweb import DicomwebServer, parse_dicomweb
from ..manifest import ManifestError, Selection, read_manifest

SOURCE_PREFIXES = ("dicomweb:", "archive:")


def bucket_from_text(text: str, api_base: str, token: str | None = None) -> Bucket:
    """A bucket URL in every form initBucket takes, `gs://bucket/datastore`,
    or a bare bucket name (the datastore at the bucket root, as `{bucket}`)."""
    bucket = parse_bucket(text if "://" in text else {"bucket": text}, api_base)
    return bucket.with_token(token) if token and not bucket.token else bucket


def source_from_text(text: str, api_base: str, token: str | None = None) -> Bucket | DicomwebServer | ArchiveSource:
    """`dicomweb:<service root URL>`, `archive:<URL of a zip, tar or tar.gz>`,
    or a bucket in any form `bucket_from_text` takes."""
    if text.startswith("dicomweb:"):
        return parse_dicomweb({"dicomweb": text[len("dicomweb:"):], "token": token})
    if text.startswith("archive:"):
        return parse_archive({"archive": text[len("archive:"):], "token": token})
    return bucket_from_text(text, api_base, token)


def read_selection(studies: Sequence[str], manifest: Path | None, optional: bool = False) -> Selection:
    """Study UIDs from the command line plus those of a manifest file."""
    uids = list(studies)
    series = None
    if manifest is not None:
        try:
            text = manifest.read_text(encoding="utf-8-sig")
        except OSError as e:
            raise ManifestError(f"manifest {manifest}: {e.strerror or e}") from None
        sel = read_manifest(text, str(manifest))
        uids += sel.studies
        series = sel.series
    if not uids and not optional:
        raise ManifestError("no studies: give STUDY_UIDs or --manifest FILE")
    return Selection(list(dict.fromkeys(uids)), series)
