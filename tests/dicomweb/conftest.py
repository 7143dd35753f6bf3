"""The Orthanc fixtures (support/orthanc_study.py) for the DICOMweb tests."""

from support.orthanc_study import orthanc, orthanc_study, own_orthanc_study  # noqa: F401 - fixtures
