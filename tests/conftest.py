"""Session-wide test bed: one real bucket server (fake-gcs-server) with real COD studies.

``pytest.ini`` puts ``tests/``, ``py/`` and the repository root on the import path
(``pythonpath``), so tests import ``from support.bucket import ...``, ``cod_retrieve`` and
``build``.
"""

from __future__ import annotations

import pytest

from support.bucket import BucketServer, start_bucket_server
from support.studies import StudyFixture, write_demo_studies


@pytest.fixture(scope="session")
def bucket_server(tmp_path_factory) -> BucketServer:
    server = start_bucket_server(tmp_path_factory.mktemp("gcs-root"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_studies(bucket_server) -> list[StudyFixture]:
    return write_demo_studies(bucket_server)


@pytest.fixture(scope="session")
def proxy(bucket_server):
    """A fault-injecting proxy in front of the real bucket server."""
    from support.faultproxy import FaultProxy
    p = FaultProxy("127.0.0.1", bucket_server.port)
    yield p
    p.stop()


@pytest.fixture
def fresh_proxy(proxy):
    proxy.reset()
    yield proxy
    proxy.reset()


@pytest.fixture(scope="session")
def resume_study(bucket_server):
    """Two series of 60 real CT instances (~60 MB): big enough to kill half-way."""
    from support.studies import write_synthetic_study
    return write_synthetic_study(bucket_server, "cod-resume", "resume/dicomweb", 2, 60)
