"""Listings that come in pages, as real GCS sends them: the bucket server
behind a proxy that re-pages object listings (items and prefixes sharing
small pages, an opaque nextPageToken). Every series is found and downloaded."""

from __future__ import annotations

import asyncio

import pytest

from cod_retrieve import CodDownload
from support.files import bucket_files, folder_files
from support.repager import RepagingProxy, check_paged


@pytest.fixture(scope="module")
def repager(bucket_server):
    p = RepagingProxy("127.0.0.1", bucket_server.port)
    yield p
    p.stop()


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_series_listed_across_pages_are_all_downloaded(repager, bucket_server, demo_studies, tmp_path, page_size):
    study = demo_studies[0]                                # 3 series
    repager.reset(page_size)

    async def go():
        cd = CodDownload(api_base=repager.url)
        await cd.init_directory(tmp_path)
        cd.init_bucket({"bucket": study.bucket, "bucketPrefix": study.datastore, "token": "t"})
        stats = await cd.get_stats([study.study_uid])
        job = await cd.download([study.study_uid])
        return stats, await job.start()

    stats, result = asyncio.run(go())
    assert stats["totalSeriesCount"] == len(study.series)
    assert sorted(d["seriesUID"] for d in stats["seriesDetails"]) == sorted(study.series)
    assert stats["warnings"] == []
    assert result["failed"] == [] and len(result["succeeded"]) == len(study.series)
    assert folder_files(tmp_path) == bucket_files(bucket_server, study)
    check_paged(repager.pages, study, page_size, n_listings=2)         # getStats, then download
    # The client asks for no page size of its own: the proxy's small pages are what it gets.
    assert all(p.max_results is None for p in repager.pages)
