"""Session-wide test bed: one real bucket server (fake-gcs-server) with real COD studies.

``tests/`` is put on sys.path so tests import ``from support.bucket import ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support.bucket import BucketServer, start_bucket_server  # noqa: E402
from support.studies import StudyFixture, write_demo_studies  # noqa: E402


@pytest.fixture(scope="session")
def bucket_server(tmp_path_factory) -> BucketServer:
    server = start_bucket_server(tmp_path_factory.mktemp("gcs-root"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_studies(bucket_server) -> list[StudyFixture]:
    return write_demo_studies(bucket_server)
