"""Test bed: a real bucket server (fake-gcs-server) and real COD studies on it."""

from .bucket import BucketServer, start_bucket_server
from .studies import StudyFixture, write_demo_studies, write_synthetic_study

__all__ = [
    "BucketServer",
    "start_bucket_server",
    "StudyFixture",
    "write_demo_studies",
    "write_synthetic_study",
]
