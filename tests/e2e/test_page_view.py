"""The pre-download view as people use it: grouped by study with the patient and
study context the metadata carries, usable at 320 px and by keyboard, and free of
serious or critical accessibility violations (axe-core) on the page and the
custom element; against the real bucket."""

from __future__ import annotations

import urllib.parse

from support.browser import ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

# axe-core's serious and critical violations (open shadow roots included).
RUN_AXE = """
async () => {
  const r = await axe.run(document, { resultTypes: ['violations'] });
  return r.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
    .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
}
"""


def _page_url(site_url, server, studies) -> str:
    q = [("api", server.url), ("bucket", studies[0].bucket), ("prefix", studies[0].datastore)]
    q += [("StudyInstanceUIDs", s.study_uid) for s in studies]
    return f"{site_url}/index.html?{urllib.parse.urlencode(q)}"


def test_view_grouped_by_study_at_320_px_by_keyboard_and_accessible(page, site_url, bucket_server, demo_studies):
    page.set_viewport_size({"width": 320, "height": 700})
    page.goto(_page_url(site_url, bucket_server, demo_studies))
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.get_by_role("button", name="Check").focus()
    page.keyboard.press("Enter")
    n_series = sum(len(s.series) for s in demo_studies)
    page.wait_for_function(f"document.querySelectorAll('#series-table tr[data-series]').length === {n_series}",
                           timeout=30_000)
    # one heading row per study, in the order asked, with who and what it is
    heads = page.locator("#series-table tr.study")
    assert heads.count() == len(demo_studies)
    assert [heads.nth(i).get_attribute("data-study") for i in range(len(demo_studies))] == \
        [s.study_uid for s in demo_studies]
    first = heads.nth(0).inner_text()
    assert "Doe Peter" in first and "2003-05-05" in first and "3 series" in first, first
    # nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
        page.evaluate("document.documentElement.scrollWidth")
    # by keyboard: a study's box leaves out all its series, a series' box brings one back
    heads.nth(0).get_by_role("checkbox").focus()
    page.keyboard.press("Space")
    rest = n_series - len(demo_studies[0].series)
    assert page.locator("#summary").inner_text().startswith(f"{rest} of {n_series} series selected: ")
    page.locator("#series-table tr[data-series]").nth(0).get_by_role("checkbox").focus()
    page.keyboard.press("Space")
    assert page.locator("#summary").inner_text().startswith(f"{rest + 1} of {n_series} series selected: ")
    assert page.evaluate("document.querySelector('#series-table tr.study input').indeterminate")

    page.add_script_tag(path=str(AXE))
    assert page.evaluate(RUN_AXE) == []


ELEMENT = """
async ({ api, bucket, prefix, studies }) => {
  await import('/cod-retrieve-element.mjs');
  document.documentElement.lang = 'en';
  document.title = 'cod-retrieve element';
  const main = document.createElement('main');
  const el = document.createElement('cod-retrieve-download');
  Object.entries({ api, bucket, prefix, studies }).forEach(([k, v]) => el.setAttribute(k, v));
  main.append(el);
  document.body.append(main);
  const root = await navigator.storage.getDirectory();
  el.directoryHandle = await root.getDirectoryHandle('axe-element', { create: true });
  const result = await el.start({ zip: false });
  return { failed: result.failed.length, rows: el.shadowRoot.querySelectorAll('li[data-status]').length };
}
"""


def test_element_has_no_serious_accessibility_violations(page, site_url, bucket_server, demo_studies):
    page.set_viewport_size({"width": 320, "height": 700})
    fx = demo_studies[0]
    page.goto(f"{site_url}/index.html")            # a document of the site's origin, emptied for the element
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate("document.body.replaceChildren()")
    out = page.evaluate(ELEMENT, {"api": bucket_server.url, "bucket": fx.bucket, "prefix": fx.datastore,
                                  "studies": fx.study_uid})
    assert out == {"failed": 0, "rows": len(fx.series)}
    page.add_script_tag(path=str(AXE))
    assert page.evaluate(RUN_AXE) == []
