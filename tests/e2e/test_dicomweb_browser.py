"""A DICOMweb server as the source in headless Chromium: a real Orthanc (DICOMweb plugin)
behind the test proxy, which adds the CORS headers a deployment's reverse proxy would.
Through the module and through the page: every file byte-equal to what Orthanc returns
for /instances/<id>/file, a second run fetches nothing, a cut connection resumes."""

from __future__ import annotations

import hashlib
import urllib.parse

import pytest

from support.browser import download_from_page, read_folder
from support.faultproxy import Fault, FaultProxy, on_path

MODULE = """
async ({ root, study, folder }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({});
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initSource({ dicomweb: root });
  const stats = await cod.getStats([study]);
  const job = await cod.download([study], false, { dump: true });
  const errors = [];
  job.onError((p) => errors.push(p.error.message));
  const result = await job.start();
  const again = await cod.getStats([study]);
  return { stats, result, errors, again };
}
"""


@pytest.fixture
def cors_proxy(orthanc):
    p = FaultProxy("127.0.0.1", orthanc.port, cors=True)
    yield p
    p.stop()


def _want(study) -> dict[str, str]:
    """path in the classic layout -> sha256 of the bytes Orthanc stores."""
    return {f"{study.study_uid}/{series}/instances/{i.sop_uid}.dcm":
            hashlib.sha256(study.server.instance_file(i.orthanc_id)).hexdigest()
            for series, insts in study.series.items() for i in insts}


def _retrievals(proxy) -> list[str]:
    return [s.path for s in proxy.seen if s.method == "GET" and "limit=" not in s.path]


def test_module_downloads_from_dicomweb(page, site_url, orthanc_study, cors_proxy):
    study = orthanc_study
    series = next(iter(study.series))
    cut = on_path(series, Fault("cut", after=30_000))       # the first series' answer, cut mid-way
    cors_proxy.rules.append(cut)
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = page.evaluate(MODULE, {"root": f"{cors_proxy.url}/dicom-web", "study": study.study_uid, "folder": "dw-module"})
    assert out["errors"] == [] and len(out["result"]["succeeded"]) == 2, out
    assert out["stats"]["totalInstanceCount"] == 6 and all(not d["sizeKnown"] for d in out["stats"]["seriesDetails"])
    assert out["again"]["totalSavedInstanceCount"] == 6
    assert cut.fired == 1
    got = {k: v["sha256"] for k, v in read_folder(page, "dw-module").items()}
    got.pop("log.json")
    dumped = sorted(k for k in got if k.startswith("dump/"))
    assert dumped == sorted([f"dump/{study.study_uid}/study.json", "dump/requests.jsonl",
                             *(f"dump/{study.study_uid}/{s}/metadata.json" for s in study.series)])
    assert {k: v for k, v in got.items() if not k.startswith("dump/")} == _want(study)
    assert any("/instances/" in p for p in _retrievals(cors_proxy))   # what the cut answer lacked, alone


def test_page_downloads_from_dicomweb(page, site_url, orthanc_study, cors_proxy):
    study = orthanc_study
    q = [("dicomweb", f"{cors_proxy.url}/dicom-web"), ("StudyInstanceUIDs", study.study_uid)]
    page.goto(f"{site_url}/index.html?{urllib.parse.urlencode(q)}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert page.get_by_label("DICOMweb server").is_checked()
    assert page.get_by_label("DICOMweb root URL").is_visible() and not page.get_by_label("Bucket URL").is_visible()
    download_from_page(page, "dw-page")
    assert page.locator("#series-table tbody td:last-child").all_inner_texts() == ["saved", "saved"]
    assert "size known once downloaded" in page.locator("#summary").inner_text()
    got = {k: v["sha256"] for k, v in read_folder(page, "dw-page").items()}
    got.pop("log.json")
    assert got == _want(study)
    # a second Download fetches nothing
    before = len(_retrievals(cors_proxy))
    page.get_by_role("button", name="Download", exact=True).click()
    page.wait_for_selector("body[data-job-state]", timeout=120_000)
    assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()
    assert len(_retrievals(cors_proxy)) == before


def test_module_reports_an_instance_the_server_does_not_send(page, site_url, own_orthanc_study):
    """Listed when the job was made, deleted from Orthanc before it starts: reported by name,
    its series failed, every other file in place."""
    study = own_orthanc_study
    series, insts = next(iter(study.series.items()))
    gone = insts[1]
    proxy = FaultProxy("127.0.0.1", study.server.port, cors=True)
    try:
        page.goto(f"{site_url}/index.html")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        page.evaluate("""async ({ root, study }) => {
            const { createCodDownload } = await import('/cod-retrieve.mjs');
            const cod = await createCodDownload({});
            window.__pickedName = 'dw-missing';
            await cod.initDirectory();
            cod.initSource({ dicomweb: root });
            window.__job = await cod.download([study], false);
            window.__errors = [];
            window.__job.onError((p) => window.__errors.push({ instance: p.instance, message: p.error.message }));
        }""", {"root": f"{proxy.url}/dicom-web", "study": study.study_uid})
        study.server.request("DELETE", f"/instances/{gone.orthanc_id}")
        result = page.evaluate("async () => { const r = await window.__job.start(); return { r, errors: window.__errors }; }")
    finally:
        proxy.stop()
    assert [e["instance"] for e in result["errors"]] == [gone.sop_uid]
    assert "did not send instance" in result["errors"][0]["message"]
    assert [f["series"] for f in result["r"]["failed"]] == [series]
    got = {k: v["sha256"] for k, v in read_folder(page, "dw-missing").items()}
    got.pop("log.json")
    assert got == {f"{study.study_uid}/{series}/instances/{i.sop_uid}.dcm": hashlib.sha256(i.data).hexdigest()
                   for i in insts if i is not gone}
