"""The page's "Verify folder": a downloaded folder checked against the real bucket
without downloading; a changed file (one byte flipped, same size, still listed in
log.json) and a deleted one are reported, and Download then fetches exactly those."""

from __future__ import annotations

import urllib.parse

from support.browser import expected_files, read_folder

# One byte flipped in place (same size), and one file deleted, in OPFS folder `folder`.
DAMAGE = """
async ({ folder, flip, gone }) => {
  let dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
  const walk = async (path) => { let d = dir; const parts = path.split('/');
    for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p); return [d, parts.at(-1)]; };
  const [d1, n1] = await walk(flip);
  const fh = await d1.getFileHandle(n1);
  const bytes = new Uint8Array(await (await fh.getFile()).arrayBuffer());
  bytes[bytes.length - 1] ^= 0xff;
  const w = await fh.createWritable();
  await w.write(bytes);
  await w.close();
  const [d2, n2] = await walk(gone);
  await d2.removeEntry(n2);
}
"""


def _verify(page) -> str:
    page.evaluate("delete document.body.dataset.verified")
    page.get_by_role("button", name="Verify folder").click()
    page.wait_for_selector("body[data-verified]", timeout=60_000)
    return page.evaluate("document.body.dataset.verified")


def _download(page) -> None:
    page.evaluate("delete document.body.dataset.jobState")
    page.get_by_role("button", name="Download", exact=True).click()
    page.wait_for_selector("body[data-job-state]", timeout=120_000)
    assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()


def test_verify_reports_a_changed_and_a_missing_file_and_download_repairs_them(page, site_url, bucket_server,
                                                                             demo_studies):
    fx = demo_studies[0]
    q = [("api", bucket_server.url), ("bucket", fx.bucket), ("prefix", fx.datastore), ("StudyInstanceUIDs", fx.study_uid)]
    page.goto(f"{site_url}/index.html?{urllib.parse.urlencode(q)}")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate("window.__pickedName = 'verified'")
    page.get_by_role("button", name="Choose folder").click()
    page.wait_for_function("!document.getElementById('verify').disabled")
    _download(page)
    want = expected_files(bucket_server.url, fx)
    assert _verify(page) == "clean"
    assert page.locator("#verify-summary").inner_text().startswith(f"{len(want)} files whole, 0 missing, 0 changed")

    flip, gone = sorted(want)[0], sorted(want)[-1]
    page.evaluate(DAMAGE, {"folder": "verified", "flip": flip, "gone": gone})
    assert _verify(page) == "problems"
    summary = page.locator("#verify-summary").inner_text()
    assert summary.startswith(f"{len(want) - 2} files whole, 1 missing, 1 changed, 0 extra."), summary
    items = page.locator("#verify-list li").all_inner_texts()
    assert f"missing: {gone}" in items and any(i.startswith(f"changed: {flip} (CRC32C") for i in items), items

    _download(page)                     # fetches exactly the two again
    got = read_folder(page, "verified")
    got.pop("log.json")
    assert got == want
    assert _verify(page) == "clean"
