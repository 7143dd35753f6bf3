"""Embedding in a viewer portal, in headless Chromium: the example portal
(web/examples/portal.html) served from a second origin loads the module and the
<cod-retrieve-download> element from the site origin by absolute URL and downloads
the real multi-series demo study; the viewer route download/<bucket>/<prefix...>
takes two studies and drops the token from the address bar; a token handed over by
postMessage reaches the bucket only as a header; the folder picker's limits (user
gesture, cross-origin iframe) are reported with clear messages and zip is offered."""

from __future__ import annotations

import hashlib
import io
import urllib.parse
import zipfile

import pytest

import build
from support.browser import assert_python_in_worker, expected_files, read_folder

from support.contract import KEYS

PROGRESS_KEYS, DOWNLOAD_KEYS, EXTRACT_KEYS, SAVE_KEYS, COMPLETE_KEYS, ERROR_KEYS, SERIES_KEYS = (
    KEYS[k] for k in ("progress", "download", "extract", "save", "complete", "error", "series"))


@pytest.fixture(scope="module")
def portal_origin(site_url):
    """The same built site on another port: another origin for the portal page."""
    server, url = build.serve_site(build.SITE)
    assert url != site_url
    yield url
    server.shutdown()
    server.server_close()


def portal_url(portal_origin, site_url, api, studies) -> str:
    q = [("site", f"{site_url}/"), ("api", api), ("bucket", studies[0].bucket), ("prefix", studies[0].datastore)]
    q += [("StudyInstanceUIDs", s.study_uid) for s in studies]
    return f"{portal_origin}/examples/portal.html?{urllib.parse.urlencode(q)}"


def open_portal(page, portal_origin, site_url, api, studies):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(portal_url(portal_origin, site_url, api, studies))
    page.wait_for_selector("body[data-ready='1']", timeout=90_000)
    return requests


def want_for(server_url, studies) -> dict:
    want = {}
    for s in studies:
        want.update(expected_files(server_url, s))
    return want


MODULE_RUN = """
async ({ api, bucket, prefix, uids, folder }) => {
  const mod = window.codModule;
  const cod = await mod.createCodDownload({ apiBase: api, concurrency: 3, getToken: async () => 'portal-token' });
  const limits = [];
  cod.onError(p => limits.push(p.kind));
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token: null });
  const stats = await cod.getStats(uids);
  const job = await cod.download(uids, false);
  const ev = { progress: [], download: [], extract: [], save: [], complete: [], error: [], series: [] };
  // keys as delivered (Python None arrives as undefined, which JSON would drop)
  const keep = (name) => (p) => ev[name].push({ ...JSON.parse(JSON.stringify(p)), __keys: Object.keys(p) });
  job.onProgress(keep('progress')).onDownload(keep('download')).onExtract(keep('extract'))
     .onSave(keep('save')).onComplete(keep('complete')).onSeries(keep('series'))
     .onError(p => ev.error.push({ ...p, error: p.error.message, __keys: Object.keys(p) }));
  const result = await job.start();
  return { stats, ev, result, limits, moduleUrl: mod.DIRECTORY_HANDLE_KEY, origin: location.origin };
}
"""


def test_portal_on_other_origin_downloads_through_module(page, site_url, portal_origin, bucket_server, demo_studies):
    study = demo_studies[0]
    assert len(study.series) > 1
    requests = open_portal(page, portal_origin, site_url, bucket_server.url, [study])
    # the module, the element and Pyodide's files came from the site origin, cross-origin
    for asset in ("/cod-retrieve.mjs", "/cod-retrieve-element.mjs", "/pyodide/pyodide.asm.wasm", "/pyodide/pyodide-lock.json"):
        assert f"{site_url}{asset}" in requests, asset
    assert not any(r.startswith(f"{portal_origin}/pyodide/") for r in requests)
    # the portal listed the study (getStats through the module)
    row = page.locator(f"#studies tr[data-study='{study.study_uid}'] td")
    assert row.nth(2).inner_text() == str(len(study.series))

    out = page.evaluate(MODULE_RUN, {"api": bucket_server.url, "bucket": study.bucket, "prefix": study.datastore,
                                     "uids": [study.study_uid], "folder": "portal-mod"})
    assert out["origin"] == portal_origin and out["limits"] == []
    ev, result = out["ev"], out["result"]
    assert ev["error"] == [] and result["failed"] == [] and not result["cancelled"]
    n_series = len(study.series)
    n_inst = sum(len(v) for v in study.series.values())
    assert len(result["succeeded"]) == n_series
    assert all(keys(p) == PROGRESS_KEYS for p in ev["progress"])
    assert ev["progress"][-1]["jobBytesDone"] == ev["progress"][-1]["jobBytesTotal"] == study.total_dicom_bytes
    assert sum(p["bytesDownloaded"] for p in ev["progress"]) == study.total_tar_bytes
    assert [keys(p) for p in ev["download"]] == [DOWNLOAD_KEYS] * n_series
    assert [keys(p) for p in ev["extract"]] == [EXTRACT_KEYS] * n_series
    assert sum(len(p["files"]) for p in ev["extract"]) == n_inst
    assert len(ev["save"]) == n_inst and all(keys(p) == SAVE_KEYS for p in ev["save"])
    assert all(p["file"]["path"] == f"{p['study']}/{p['series']}/instances/{p['instance']}.dcm" for p in ev["save"])
    assert all(p["file"]["name"] == f"instances/{p['instance']}.dcm" for p in ev["save"])
    assert all(keys(p) == SERIES_KEYS for p in ev["series"])
    assert sorted(p["key"] for p in ev["series"] if p["status"] == "saved") == sorted(result["succeeded"])
    assert len(ev["complete"]) == 1 and keys(ev["complete"][0]) == COMPLETE_KEYS
    assert ev["complete"][0]["succeeded"] == result["succeeded"]
    assert_python_in_worker(page)            # the module's Worker, started from a blob: on the portal's origin
    got = read_folder(page, "portal-mod")
    got.pop("log.json")
    assert got == want_for(bucket_server.url, [study])


def element_events(page) -> dict:
    evs = page.evaluate("(window.portalEvents || []).map(e => ({ ...e, detail: { ...e.detail, __keys: e.keys } }))")
    out: dict = {}
    for e in evs:
        out.setdefault(e["type"], []).append(e["detail"])
    return out


def keys(p) -> set:
    return set(p["__keys"])


def test_portal_element_folder_mode(page, site_url, portal_origin, bucket_server, demo_studies):
    study = demo_studies[0]
    open_portal(page, portal_origin, site_url, bucket_server.url, [study])
    page.evaluate("window.__pickedName = 'portal-el'")
    page.get_by_role("button", name="Download to folder").click()
    el = page.locator("cod-retrieve-download")
    page.wait_for_selector("cod-retrieve-download[data-state]:not([data-state='running'])", timeout=120_000)
    assert el.get_attribute("data-state") == "done", el.inner_text()
    ev = element_events(page)
    assert "error" not in ev
    assert ev["progress"] and all(keys(p) == PROGRESS_KEYS for p in ev["progress"])
    assert ev["progress"][-1]["jobBytesDone"] == study.total_dicom_bytes
    assert len(ev["series-saved"]) == len(study.series)
    assert all(keys(p) == SERIES_KEYS and p["status"] == "saved" for p in ev["series-saved"])
    assert len(ev["complete"]) == 1 and keys(ev["complete"][0]) == COMPLETE_KEYS
    assert len(ev["complete"][0]["succeeded"]) == len(study.series)
    # the Shadow DOM view: one row per series, all saved, the overall line at 100 %
    statuses = page.locator("cod-retrieve-download li[data-status]").evaluate_all("els => els.map(e => e.dataset.status)")
    assert statuses == ["saved"] * len(study.series)
    assert "(100 %)" in page.locator("cod-retrieve-download [role=status]").inner_text()
    assert page.locator("cod-retrieve-download [role=progressbar]").first.get_attribute("aria-valuenow") == "100"
    # the picked folder is shared with the viewer: IndexedDB, key indexed_db_directory_handle_key
    assert page.evaluate("window.codModule.storedDirectoryHandle().then(h => h && h.name)") == "portal-el"
    assert_python_in_worker(page)
    got = read_folder(page, "portal-el")
    got.pop("log.json")
    assert got == want_for(bucket_server.url, [study])


def test_portal_element_zip_mode_narrow(page, site_url, portal_origin, bucket_server, demo_studies):
    page.set_viewport_size({"width": 320, "height": 640})
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    open_portal(page, portal_origin, site_url, bucket_server.url, demo_studies)
    page.get_by_role("button", name="Download zip").click()
    page.wait_for_selector("cod-retrieve-download[data-state]:not([data-state='running'])", timeout=120_000)
    el = page.locator("cod-retrieve-download")
    assert el.get_attribute("data-state") == "done", el.inner_text()
    # readable at 320 px: nothing sticks out of the element
    overflow = page.evaluate("""() => {
      const host = document.querySelector('cod-retrieve-download');
      const w = host.getBoundingClientRect().right;
      return [...host.shadowRoot.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > w + 1).length;
    }""")
    assert overflow == 0
    ev = element_events(page)
    assert "error" not in ev and len(ev["series-saved"]) == sum(len(s.series) for s in demo_studies)
    assert sorted(d.suggested_filename for d in downloads) == sorted(f"{s.study_uid}.zip" for s in demo_studies)
    want = want_for(bucket_server.url, demo_studies)
    for d in downloads:
        study_uid = d.suggested_filename[:-len(".zip")]
        with zipfile.ZipFile(io.BytesIO(open(d.path(), "rb").read())) as zf:
            got = {f"{study_uid}/{i.filename}": {"size": i.file_size, "sha256": hashlib.sha256(zf.read(i)).hexdigest()}
                   for i in zf.infolist()}
        assert got == {k: v for k, v in want.items() if k.startswith(f"{study_uid}/")}


def viewer_route(site_url, api, studies, zip_output, token=None) -> str:
    path = "/".join(urllib.parse.quote(p, safe="") for p in [studies[0].bucket, *studies[0].datastore.split("/")])
    q = [("api", api)] + [("StudyInstanceUIDs", s.study_uid) for s in studies] + [("zip", str(zip_output).lower())]
    if token:
        q.append(("token", token))
    return f"{site_url}/download/{path}?{urllib.parse.urlencode(q)}"


def test_viewer_route_two_studies_drops_token(page, site_url, bucket_server, demo_studies):
    assert len(demo_studies) >= 2
    page.goto(viewer_route(site_url, bucket_server.url, demo_studies, False, token="secret-token"))
    page.wait_for_selector("body[data-ready='1']", timeout=90_000)
    href = page.evaluate("location.href")
    assert "token" not in href and "secret-token" not in page.url
    assert f"/download/{demo_studies[0].bucket}/" in href                 # the route itself stays
    assert page.evaluate("window.__codRetrieveToken === undefined")       # the hand-over slot is emptied
    assert page.input_value("#bucket") == demo_studies[0].bucket
    assert page.input_value("#prefix") == demo_studies[0].datastore      # as given, no /dicomweb added
    assert page.input_value("#token") == "secret-token"
    assert page.input_value("#studies").split() == [s.study_uid for s in demo_studies]
    page.evaluate("window.__pickedName = 'viewer-route'")
    page.get_by_role("button", name="Choose folder").click()
    page.get_by_role("button", name="Download", exact=True).click()
    page.wait_for_selector("body[data-job-state]", timeout=120_000)
    assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()
    assert_python_in_worker(page)
    got = read_folder(page, "viewer-route")
    got.pop("log.json")
    assert got == want_for(bucket_server.url, demo_studies)
    assert "token" not in page.evaluate("location.href")


def test_viewer_route_token_by_postmessage_from_portal(page, site_url, portal_origin, fresh_proxy, bucket_server,
                                                        demo_studies):
    study = demo_studies[1]
    fresh_proxy.required_token = "portal-token"
    open_portal(page, portal_origin, site_url, fresh_proxy.url, [study])
    page.fill("#token", "portal-token")
    with page.expect_popup() as info:
        page.get_by_role("button", name="Open download page").click()
    popup = info.value
    popup.wait_for_selector("body[data-ready='1']", timeout=90_000)
    popup.wait_for_function("document.getElementById('token').value === 'portal-token'", timeout=10_000)
    assert "token" not in popup.url
    assert popup.input_value("#prefix") == study.datastore
    popup.evaluate("window.__pickedName = 'by-message'")
    popup.get_by_role("button", name="Choose folder").click()
    popup.get_by_role("button", name="Download", exact=True).click()
    popup.wait_for_selector("body[data-job-state]", timeout=120_000)
    assert popup.evaluate("document.body.dataset.jobState") == "done", popup.locator("#errors").inner_text()
    got = read_folder(popup, "by-message")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    gets = [s for s in fresh_proxy.seen if s.method == "GET"]
    assert gets and all("token" not in s.path for s in fresh_proxy.seen)
    assert any(s.auth == "Bearer portal-token" and s.path.split("?")[0].endswith(".tar") for s in gets)


NO_GESTURE = """
Object.defineProperty(Navigator.prototype, 'userActivation', {
  configurable: true, get: () => ({ isActive: false, hasBeenActive: false }) });
"""


def test_folder_picker_without_gesture_is_refused_and_zip_offered(browser, site_url, portal_origin, bucket_server,
                                                                   demo_studies):
    from support.browser import PICKER
    context = browser.new_context(accept_downloads=True)
    context.add_init_script(PICKER)
    context.add_init_script(NO_GESTURE)
    page = context.new_page()
    try:
        open_portal(page, portal_origin, site_url, bucket_server.url, demo_studies[:1])
        out = page.evaluate("""async (uid) => {
          const cod = await window.codModule.createCodDownload({});
          const seen = [];
          cod.onError(p => seen.push({ kind: p.kind, message: p.error.message, isError: p.error instanceof Error }));
          let rejected = null;
          try { await cod.initDirectory(); } catch (e) { rejected = { kind: e.kind, message: e.message }; }
          const problem = cod.folderPickerProblem();
          const el = document.querySelector('cod-retrieve-download');
          el.studyUIDs = [uid];
          let elRejected = null;
          try { await el.start({ zip: false }); } catch (e) { elRejected = e.kind; }
          return { seen, rejected, problem, elRejected };
        }""", demo_studies[0].study_uid)
        assert out["rejected"]["kind"] == "no-user-gesture"
        assert "user gesture" in out["rejected"]["message"] and "zip" in out["rejected"]["message"]
        assert out["seen"] == [{"kind": "no-user-gesture", "message": out["rejected"]["message"], "isError": True}]
        assert out["problem"]["kind"] == "no-user-gesture"
        assert out["elRejected"] == "no-user-gesture"
        ev = element_events(page)
        assert [e["kind"] for e in ev["error"]] == ["no-user-gesture"]
        assert "user gesture" in page.locator("cod-retrieve-download ul[role=alert]").inner_text()
        # zip needs no gesture: it still works from the same page
        with page.expect_download(timeout=120_000):
            page.evaluate("document.querySelector('cod-retrieve-download').start({ zip: true })")
        page.wait_for_selector("cod-retrieve-download[data-state='done']", timeout=120_000)
    finally:
        context.close()


def test_folder_picker_in_cross_origin_iframe_is_refused(page, site_url, portal_origin, bucket_server, demo_studies):
    open_portal(page, portal_origin, site_url, bucket_server.url, demo_studies[:1])
    page.evaluate("""(src) => new Promise((resolve) => {
      const f = document.createElement('iframe');
      f.src = src; f.id = 'framed'; f.onload = resolve;
      document.body.append(f);
    })""", f"{site_url}/index.html")
    frame = next(f for f in page.frames if f.url.startswith(f"{site_url}/index.html"))
    frame.wait_for_selector("body[data-ready='1']", timeout=90_000)
    out = frame.evaluate("""async () => {
      const { createCodDownload } = await import('/cod-retrieve.mjs');
      const cod = await createCodDownload({ onError: (p) => (window.__seen = p.kind) });
      try { await cod.initDirectory(); return null; } catch (e) { return { kind: e.kind, message: e.message, seen: window.__seen }; }
    }""")
    assert out["kind"] == out["seen"] == "cross-origin-iframe"
    assert "cross-origin iframe" in out["message"] and "zip" in out["message"]
    # the hosted page in the frame says so and keeps only zip
    assert frame.locator("#picker-note").is_visible()
    assert "cross-origin iframe" in frame.locator("#picker-note").inner_text()
    assert frame.locator("#choose-folder").is_disabled()
    assert frame.locator("#download-zip").is_enabled()
