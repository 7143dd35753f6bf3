from __future__ import annotations

import pytest

from support.studies import write_synthetic_study


@pytest.fixture(scope="session")
def cohort_study(bucket_server, demo_studies):
    """Two series of 30 real CT instances (~32 MB) beside the demo studies, in
    the same bucket and datastore: a cohort of three studies."""
    return write_synthetic_study(bucket_server, "cod-demo", "demo/dicomweb", 2, 30)
