"""A basket of series: only the series chosen are listed, fetched and saved, through
the JS module (`{series: [...]}`), the page's ticks, the page's address
(`SeriesInstanceUIDs=`) and the custom element's `series` attribute; against the
real bucket, every file compared with the bucket's."""

from __future__ import annotations

import urllib.parse

from support.browser import download_from_page, expected_files, read_folder

MODULE = """
async ({ api, bucket, prefix, study, series, folder }) => {
  const { createCodDownload } = await import('/cod-retrieve.mjs');
  const cod = await createCodDownload({ apiBase: api });
  window.__pickedName = folder;
  await cod.initDirectory();
  cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
  const stats = await cod.getStats([study], { series });
  const job = await cod.download([study], false, { series });
  const result = await job.start();
  const after = await cod.getStats([study], { series });
  const whole = await cod.getStats([study]);
  return { stats, result, after, whole, tars: job.traffic().requests };
}
"""


def _only(files: dict, series: list[str]) -> dict:
    return {k: v for k, v in files.items() if k.split("/")[1] in series}


def test_module_downloads_only_the_selected_series(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]                                  # three MR series
    all_series = sorted(fx.series)
    chosen = all_series[:2]
    page.goto(f"{site_url}/index.html")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    out = page.evaluate(MODULE, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                                 "study": fx.study_uid, "series": chosen, "folder": "basket-module"})
    assert out["stats"]["totalSeriesCount"] == 2
    assert sorted(d["seriesUID"] for d in out["stats"]["seriesDetails"]) == chosen
    assert sorted(out["result"]["succeeded"]) == sorted(f"{fx.study_uid}/{s}" for s in chosen)
    assert out["after"]["series"] == [] and out["after"]["items"] == []         # the selection is complete
    assert out["whole"]["totalSeriesCount"] == 3 and len(out["whole"]["series"]) == 1   # the third still to fetch
    got = read_folder(page, "basket-module")
    got.pop("log.json")
    assert got == _only(expected_files(bucket_server.url, fx), chosen)


def _page_url(site_url, server, fx, extra=()) -> str:
    q = [("api", server.url), ("bucket", fx.bucket), ("prefix", fx.datastore), ("StudyInstanceUIDs", fx.study_uid),
         *extra]
    return f"{site_url}/index.html?{urllib.parse.urlencode(q)}"


def test_page_basket_leaves_out_an_unticked_series(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]
    page.goto(_page_url(site_url, bucket_server, fx))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.get_by_role("button", name="Check").click()
    page.wait_for_function("document.querySelectorAll('#series-table tr[data-series]').length === 3", timeout=30_000)
    rows = page.locator("#series-table tr[data-series]")
    dropped = rows.nth(1).get_attribute("data-series")
    rows.nth(1).get_by_role("checkbox").uncheck()               # by its label, as a keyboard or screen reader user
    assert page.locator("#summary").inner_text().startswith("2 of 3 series selected: ")
    assert page.evaluate("document.getElementById('select-all').indeterminate")
    download_from_page(page, "basket-page")
    kept = sorted(s for s in fx.series if s != dropped)
    got = read_folder(page, "basket-page")
    got.pop("log.json")
    assert got == _only(expected_files(bucket_server.url, fx), kept)
    # the untick survives the check that Download makes again
    assert not rows.nth(1).get_by_role("checkbox").is_checked()
    statuses = page.locator("#series-table tbody td:last-child").all_inner_texts()
    assert statuses[1] != "saved" and statuses[0] == statuses[2] == "saved", statuses


def test_page_takes_the_series_from_its_address(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]
    wanted = sorted(fx.series)[2]
    page.goto(_page_url(site_url, bucket_server, fx, [("SeriesInstanceUIDs", wanted)]))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    download_from_page(page, "basket-address")
    got = read_folder(page, "basket-address")
    got.pop("log.json")
    assert got == _only(expected_files(bucket_server.url, fx), [wanted])
    assert page.locator("#summary").inner_text().startswith("1 of 3 series selected: ")


ELEMENT = """
async ({ api, bucket, prefix, study, series }) => {
  await import('/cod-retrieve-element.mjs');
  const el = document.createElement('cod-retrieve-download');
  Object.entries({ api, bucket, prefix, studies: study, series }).forEach(([k, v]) => el.setAttribute(k, v));
  document.body.append(el);
  const root = await navigator.storage.getDirectory();
  el.directoryHandle = await root.getDirectoryHandle('basket-element', { create: true });
  const result = await el.start({ zip: false });
  return { result, rows: el.shadowRoot.querySelectorAll('li[data-status]').length };
}
"""


def test_element_takes_a_series_attribute(page, site_url, bucket_server, demo_studies):
    fx = demo_studies[0]
    chosen = sorted(fx.series)[1:]
    page.goto(f"{site_url}/format.mjs")
    out = page.evaluate(ELEMENT, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                                  "study": fx.study_uid, "series": " ".join(chosen)})
    assert out["rows"] == 2 and out["result"]["failed"] == []
    got = read_folder(page, "basket-element")
    got.pop("log.json")
    assert got == _only(expected_files(bucket_server.url, fx), chosen)


def test_manifest_fills_the_basket_and_the_filter_narrows_the_view(page, site_url, bucket_server, demo_studies,
                                                                   tmp_path):
    fx = demo_studies[0]
    chosen = sorted(fx.series)[:2]
    manifest = tmp_path / "idc-export.csv"       # as IDC exports it: more columns, a row per series
    manifest.write_text("collection_id,PatientID,StudyInstanceUID,SeriesInstanceUID\n"
                        + "".join(f"demo,98890234,{fx.study_uid},{s}\n" for s in chosen))
    q = [("api", bucket_server.url), ("bucket", fx.bucket), ("prefix", fx.datastore)]
    page.goto(f"{site_url}/index.html?{urllib.parse.urlencode(q)}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.set_input_files("#manifest", str(manifest))
    page.wait_for_function("document.querySelectorAll('#series-table tr[data-series]').length === 3", timeout=30_000)
    assert page.locator("#studies").input_value() == fx.study_uid
    assert page.locator("#summary").inner_text().startswith("2 of 3 series selected: ")
    ticked = page.locator("#series-table tr[data-series]").evaluate_all(
        "trs => trs.filter(tr => tr.querySelector('input').checked).map(tr => tr.dataset.series)")
    assert sorted(ticked) == chosen

    page.get_by_label("Show only series matching").fill("localizer")
    visible = page.locator("#series-table tr[data-series]:not([hidden])").all_inner_texts()
    assert len(visible) == 1 and "LOCALIZER" in visible[0]
    page.get_by_label("Show only series matching").fill("")
    assert page.locator("#series-table tr[data-series]:not([hidden])").count() == 3

    download_from_page(page, "basket-manifest")
    got = read_folder(page, "basket-manifest")
    got.pop("log.json")
    assert got == _only(expected_files(bucket_server.url, fx), chosen)

    bad = tmp_path / "bad.csv"
    bad.write_text("StudyInstanceUID\n1.2.3\nnot-a-uid\n")
    page.set_input_files("#manifest", str(bad))
    page.wait_for_selector("#errors li")
    assert "bad.csv, line 3: StudyInstanceUID 'not-a-uid'" in page.locator("#errors").inner_text()
