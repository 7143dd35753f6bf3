"""Series thumbnails in the pre-download view (headless Chromium, the real bucket
behind the fault proxy, thumbnails made by the real COD writer): fetched only
when a row comes into view, shown beside the series, and never waited for: with
every video thumbnail held by the proxy, the download still runs to the end."""

from __future__ import annotations

import hashlib
import threading
import urllib.parse

from support.browser import download_from_page, expected_files, read_folder
from support.faultproxy import Fault, on_path

SHOWN = "[...document.querySelectorAll('td[data-thumbnail-shown]')].map(td => td.dataset.thumbnailShown)"


def _thumbnail_objects(server, fx) -> dict[str, bytes]:
    """series UID -> the thumbnail object the writer stored beside its tar."""
    items, _ = server.list_objects(fx.bucket, fx.study_prefix)
    out = {}
    for it in items:
        if it["name"].rsplit("/", 1)[-1].startswith("thumbnail."):
            data, _ = server.download(fx.bucket, it["name"], accept_gzip=False)
            out[it["name"].rsplit("/", 2)[-2]] = (it["name"].rsplit("/", 1)[-1], data)
    return out


def test_thumbnails_lazy_and_never_blocking(page, site_url, fresh_proxy, bucket_server, demo_studies):
    fx = demo_studies[1]                              # CR, MR (10 frames), US, CT: jpg and mp4
    stored = _thumbnail_objects(bucket_server, fx)
    videos = sorted(s for s, (name, _) in stored.items() if name.endswith(".mp4"))
    images = sorted(s for s, (name, _) in stored.items() if name.endswith(".jpg"))
    assert videos and images, stored                  # the writer made both kinds
    release = threading.Event()
    hold = on_path("thumbnail.mp4", Fault("hold", release=release), times=len(videos))
    fresh_proxy.rules.append(hold)
    try:
        q = [("api", fresh_proxy.url), ("bucket", fx.bucket), ("prefix", fx.datastore),
             ("StudyInstanceUIDs", fx.study_uid)]
        page.set_viewport_size({"width": 1000, "height": 300})
        page.goto(f"{site_url}/index.html?{urllib.parse.urlencode(q)}")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        # Check with the page at its top (a click would scroll the button into view)
        page.evaluate("scrollTo(0, 0); document.getElementById('source').requestSubmit()")
        page.wait_for_function(f"document.querySelectorAll('#series-table tr[data-series]').length === {len(fx.series)}")
        names = page.evaluate("Object.fromEntries([...document.querySelectorAll('#series-table tr[data-series]')]"
                              ".map(tr => [tr.dataset.series, tr.querySelector('td.desc').dataset.thumbnail]))")
        assert names == {s: stored[s][0] for s in fx.series}  # stats name each series' thumbnail

        # Lazy: nothing asked of the bucket for a thumbnail until its row is in view.
        def asked():
            return sorted(s.path.split("?")[0].rsplit("%2F", 2)[-2] for s in fresh_proxy.seen
                          if "thumbnail." in s.path)
        rows = page.locator("#series-table tr[data-series]")
        far = page.evaluate("""() => [...document.querySelectorAll('#series-table tr[data-series]')]
            .every(tr => tr.getBoundingClientRect().top > innerHeight + 250)""")
        assert far, "every row must start out of view for this test"
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")   # observer ran
        assert asked() == [] and page.evaluate(SHOWN) == []
        for i in range(rows.count()):
            rows.nth(i).scroll_into_view_if_needed()
            series = rows.nth(i).get_attribute("data-series")
            if series in images:
                page.wait_for_function("(tr) => tr.querySelector('td.desc').dataset.thumbnailShown === 'image/jpeg'",
                                       arg=rows.nth(i).element_handle())
                assert rows.nth(i).locator("img.thumbnail").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
            else:
                fresh_proxy.wait_until(lambda: series in asked(), what=f"the thumbnail of {series} asked for")
        assert asked() == sorted(names)               # each once, none before its row was scrolled to

        # Never waited for: the videos are still held, and the download runs to the end.
        def held():
            return [s for s in fresh_proxy.seen if "thumbnail.mp4" in s.path and not s.done]
        fresh_proxy.wait_until(lambda: hold.fired == len(videos), what="every video thumbnail held")
        assert len(held()) == len(videos)
        download_from_page(page, "thumbs")
        assert len(held()) == len(videos) and not release.is_set()   # still held: nothing waited for them
        got = read_folder(page, "thumbs")
        got.pop("log.json")
        assert got == expected_files(bucket_server.url, fx)
    finally:
        release.set()
    page.wait_for_function(f"{SHOWN}.filter(t => t === 'video/mp4').length === {len(videos)}")
    # the bytes shown are the writer's, through the module's API too
    blobs = page.evaluate("""async ([api, bucket, prefix, study, series]) => {
        const { createCodDownload } = await import('/cod-retrieve.mjs');
        const cod = await createCodDownload({ apiBase: api });
        cod.initBucket({ bucket, bucketPrefix: prefix, token: 't' });
        await cod.getStats([study]);
        const out = {};
        for (const s of series) {
          const b = await cod.thumbnail(study, s);
          const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await b.arrayBuffer()));
          out[s] = [b.type, [...d].map(x => x.toString(16).padStart(2, '0')).join('')];
        }
        return out;
    }""", [bucket_server.url, fx.bucket, fx.datastore, fx.study_uid, sorted(stored)])
    assert blobs == {s: ["video/mp4" if n.endswith(".mp4") else "image/jpeg", hashlib.sha256(d).hexdigest()]
                     for s, (n, d) in stored.items()}
