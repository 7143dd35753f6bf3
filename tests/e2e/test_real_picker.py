"""The hosted page with Chromium's real folder picker, answered as a person would.

No substitute for ``showDirectoryPicker``: a headed Debian Chromium runs on its own
Xvfb display; xdotool answers the GTK dialog ("Select where this site can save
changes": ctrl+l, the folder's path, a click on "Open") and then clicks "Allow" in
Chromium's "Allow this site to edit files?" prompt. The download goes through
``createWritable`` swap files into a real folder, which is then read back with plain
Python and compared with the bucket.

The display, the xdotool steps and the search for the "Allow" button (on a screenshot:
Chromium draws that prompt inside its window) are in ``support/picker.py``, shared with
``bench/bench_download.py --real-folder``. Every wait polls a condition (a window
appears or goes, a button is seen, a page attribute is set) under a generous safety
timeout; a failed step leaves a screenshot of the whole display whose path is in the
assertion message.

Needs the Debian packages ``xvfb``, ``xdotool`` and ``imagemagick`` (``import``), which
``python3 build.py setup`` installs.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest

from support.browser import CHROMIUM, expected_files, open_page
from support.picker import HEADED_ARGS, Display, answer_folder_picker, disk_files, missing_tools

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason="no Xvfb, xdotool, ImageMagick or chromium (python3 build.py setup installs them)")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def display(tmp_path_factory):
    d = Display(tmp_path_factory.mktemp("real-picker-shots"))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def headed_browser(display):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        # HEADED_ARGS: Safe Browsing's lookups resolve nowhere (see support/picker.py).
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=False, env=display.env, args=HEADED_ARGS)
        yield b
        b.close()


@pytest.fixture
def headed_page(headed_browser):
    pg = open_page(headed_browser)
    yield pg
    pg.context.close()


# --------------------------------------------------------------------------- the test
def test_page_downloads_into_folder_picked_with_real_picker(
        display, headed_page, site_url, bucket_server, demo_studies, tmp_path):
    page = headed_page
    folder = tmp_path / "studies-here"
    folder.mkdir()
    q = [("api", bucket_server.url), ("bucket", demo_studies[0].bucket), ("prefix", demo_studies[0].datastore)]
    q += [("StudyInstanceUIDs", s.study_uid) for s in demo_studies]
    page.goto(f"{site_url}/index.html?{urllib.parse.urlencode(q)}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert page.evaluate("typeof window.showDirectoryPicker") == "function"
    page.get_by_role("button", name="Check").click()
    page.wait_for_function("document.querySelectorAll('#series-table tbody tr').length >= 7", timeout=30_000)

    page.get_by_role("button", name="Choose folder").click()
    answer_folder_picker(display, folder)
    try:
        page.wait_for_function("!document.getElementById('download').disabled", timeout=30_000)
    except Exception:
        display.fail(f"Download not enabled after Allow; errors: {page.locator('#errors').inner_text()!r}")
    assert page.locator("#folder-name").inner_text() == f"Saving into folder “{folder.name}”."

    page.get_by_role("button", name="Download", exact=True).click()
    try:
        page.wait_for_selector("body[data-job-state]", timeout=180_000)
    except Exception:
        display.fail("the download did not finish")
    state = page.evaluate("document.body.dataset.jobState")
    if state != "done":
        display.fail(f"job ended {state!r}: {page.locator('#errors').inner_text()!r}")
    assert "(100 %)" in page.locator("#overall-text").inner_text()
    assert page.locator("#series-table tbody td:last-child").all_inner_texts() == ["saved"] * 7

    got = disk_files(folder)                # plain Python, on the real disk
    want = {}
    for s in demo_studies:
        want.update(expected_files(bucket_server.url, s))
    log = got.pop("log.json", None)
    assert log and log["size"] > 0, sorted(got)
    json.loads((folder / "log.json").read_text())
    assert got == want                      # every instance, byte for byte, and nothing else
