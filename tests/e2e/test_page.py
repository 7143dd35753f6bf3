"""The hosted page, driven through its own controls, against the real bucket."""

from __future__ import annotations

import urllib.parse

from support.browser import assert_python_in_worker, expected_files, read_folder


def page_url(site_url, server, studies) -> str:
    q = [("api", server.url), ("bucket", studies[0].bucket), ("prefix", studies[0].datastore),
         ("token", "secret-token")]
    q += [("StudyInstanceUIDs", s.study_uid) for s in studies]
    return f"{site_url}/index.html?{urllib.parse.urlencode(q)}"


def test_page_downloads_studies_into_folder(page, site_url, bucket_server, demo_studies):
    page.goto(page_url(site_url, bucket_server, demo_studies))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert "token" not in page.url                      # dropped from the address bar at once
    page.get_by_role("button", name="Check").click()
    page.wait_for_function("document.querySelectorAll('#series-table tbody tr').length >= 7", timeout=30_000)
    assert "7 series" in page.locator("#summary").inner_text()

    page.get_by_role("button", name="Choose folder").click()
    page.wait_for_function("!document.getElementById('download').disabled")
    page.get_by_role("button", name="Download", exact=True).click()
    page.wait_for_selector("body[data-job-state]", timeout=120_000)
    assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()
    assert "(100 %)" in page.locator("#overall-text").inner_text()
    statuses = page.locator("#series-table tbody td:last-child").all_inner_texts()
    assert statuses == ["saved"] * 7
    assert_python_in_worker(page)

    got = read_folder(page)
    want = {}
    for s in demo_studies:
        want.update(expected_files(bucket_server.url, s))
    log = got.pop("log.json")
    assert log["size"] > 0
    assert got == want

    # Reload the tab: the folder picked before is offered again (its handle is kept in
    # IndexedDB), and a download into it fetches no tar: everything is saved and logged.
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.get_by_role("button", name="Use previous folder “picked”").click()
    page.wait_for_function("!document.getElementById('download').disabled")
    page.get_by_role("button", name="Download", exact=True).click()
    page.wait_for_selector("body[data-job-state]", timeout=60_000)
    assert page.evaluate("document.body.dataset.jobState") == "done"
    summary = page.locator("#summary").inner_text()
    assert "already saved" in summary and "0 B to download" in summary
