"""Cloud Optimized DICOM retrieval: streamed, verified, runtime-neutral."""

from .bucket import Bucket, parse_bucket
from .download import CodDownload
from .errors import (AuthError, BucketError, Cancelled, CodError, HttpError, IntegrityError,
                     MetadataError, NetworkError, StorageFullError, TarError, UidError)
from .http import RetryPolicy
from .job import Job

__all__ = ["Bucket", "parse_bucket", "CodDownload", "Job", "RetryPolicy", "CodError", "AuthError",
           "BucketError", "Cancelled", "HttpError", "IntegrityError", "MetadataError",
           "NetworkError", "StorageFullError", "TarError", "UidError"]
__version__ = "0.1.0"
