"""Errors that name what was wrong, so a user can act on them."""

from __future__ import annotations


class CodError(Exception):
    """Base of every error this package raises on purpose.

    `study` and `series` are carried so that a job can report which part of a
    download failed without parsing messages.
    """

    def __init__(self, message: str, *, study: str | None = None, series: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.study = study
        self.series = series
        self.url = url


class BucketError(CodError, ValueError):
    """The bucket details (URL string or object) cannot be used."""


class UidError(CodError, ValueError):
    """A study, series or instance UID is not a valid DICOM UID."""


class HttpError(CodError):
    """The bucket answered with a status we cannot use."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.retry_after = retry_after


class AuthError(HttpError):
    """The bucket refused the token (401/403) and no fresh one could be had."""


class NetworkError(CodError):
    """The connection failed, was cut, or stalled."""


class MetadataError(CodError):
    """A series' metadata.json is missing, malformed, hostile or inconsistent."""


class TarError(CodError):
    """A series tar is truncated, corrupt, or holds members we refuse to write."""


class IntegrityError(CodError):
    """An instance's bytes do not match the size, CRC32C or UID its metadata promised."""


class Cancelled(CodError):
    """The job was cancelled by its owner."""


class StorageFullError(CodError, OSError):
    """The place files go has no room left: the job stops, what is saved stays
    saved, and a later run after space is freed completes it."""
