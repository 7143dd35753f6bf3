"""The page's Pause and Resume buttons on a real download (index.html, its own
controls, headless Chromium, the real bucket behind the fault proxy).

The proxy holds every tar the job starts at HOLD_AT bytes until the test
releases it, so the job is certainly mid-download when Pause is pressed, with
one read per running series waiting on the wire. Paused, the hold is
released: those reads land, and after that nothing is asked of the bucket and
nothing more is read until Resume; then every file lands as the bucket has it,
and nothing was fetched twice."""

from __future__ import annotations

import threading
import urllib.parse

from support.browser import WATCH_BODIES, expected_files, python_worker, read_folder, wait_in
from support.faultproxy import Fault, on_path
from support.files import tars_by_size

HOLD_AT = 256 * 1024        # below the smallest tar of the study
CONCURRENCY = 3             # the page's: series downloaded at once

# Instrumentation of the real job where it runs, the module's Worker (nothing
# replaced): every fetch and every read of a fetched body is counted, and any
# begun while the job is paused (between the page's "pause" and "resume" calls
# reaching the worker, each handled before this listener sees it) is written
# down; the job's id and the client's byte count after its plan are kept.
INSTRUMENT = """
() => {
  const ops = globalThis.codRetrieveOps;
  const rec = globalThis.__rec = { pendingReads: 0, whilePaused: [], paused: false, job: null, planBytes: 0 };
  self.addEventListener("message", (ev) => {
    if (ev.data?.op === "pause") rec.paused = true;
    if (ev.data?.op === "resume") rec.paused = false;
  });
  (WATCH_BODIES)({
    fetch(url) { if (rec.paused) rec.whilePaused.push(['fetch', url]); },
    read(url, p) {
      if (rec.paused) rec.whilePaused.push(['read', url]);
      rec.pendingReads += 1;
      return p.finally(() => { rec.pendingReads -= 1; });
    },
  });
  const download0 = ops.download;
  ops.download = async (...a) => {
    const job = await download0(...a);
    rec.planBytes = ops.traffic(job).bodyBytes;      // listing and metadata of this job's plan
    rec.job = job;
    return job;
  };
  globalThis.__traffic = () => rec.job === null ? null : ops.traffic(rec.job);
}
""".replace("(WATCH_BODIES)", f"({WATCH_BODIES})")


# Turns of the Worker's event loop, which Python's runs on: any task that can
# run, runs (a job that did not hold would read on and fetch the next series here).
LOOP_TURNS = """
async () => { for (let i = 0; i < 200; i++) await new Promise((r) => setTimeout(r, 0)); }
"""


def page_url(site_url, proxy, study) -> str:
    q = [("api", proxy.url), ("bucket", study.bucket), ("prefix", study.datastore),
         ("StudyInstanceUIDs", study.study_uid)]
    return f"{site_url}/index.html?{urllib.parse.urlencode(q)}"


def traffic(worker) -> dict:
    return worker.evaluate("globalThis.__traffic()")


def test_pause_and_resume_buttons(page, site_url, fresh_proxy, bucket_server, demo_studies):
    study = demo_studies[1]                       # 4 series: one waits while 3 run
    assert len(study.series) > CONCURRENCY
    release = threading.Event()
    hold = on_path(".tar", Fault("hold", at=HOLD_AT, release=release), times=CONCURRENCY, ranged=False)
    fresh_proxy.rules.append(hold)
    try:
        page.goto(page_url(site_url, fresh_proxy, study))
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        worker = python_worker(page)
        worker.evaluate(INSTRUMENT)
        page.evaluate("window.__pickedName = 'paused'")
        page.get_by_role("button", name="Choose folder").click()
        page.wait_for_function("!document.getElementById('download').disabled")
        page.get_by_role("button", name="Download", exact=True).click()

        # Mid-download, certainly: every running series' tar held at HOLD_AT, all
        # of it taken by the job, and its next read waiting for more.
        fresh_proxy.wait_until(lambda: hold.fired == CONCURRENCY, what="every running tar held")
        wait_in(worker, f"""() => globalThis.__rec.job !== null && globalThis.__rec.pendingReads === {CONCURRENCY}
            && globalThis.__traffic().bodyBytes === globalThis.__rec.planBytes + {CONCURRENCY * HOLD_AT}""",
                what="every held tar read up to the hold")
        page.wait_for_function(f"""[...document.querySelectorAll('#series-table tbody td:last-child')]
            .filter(td => td.textContent === 'downloading').length === {CONCURRENCY}""")

        page.get_by_role("button", name="Pause").click()
        page.wait_for_function("document.getElementById('pause').textContent === 'Resume'")
        wait_in(worker, "() => globalThis.__rec.paused", what="the pause reached the job")
        assert worker.evaluate("globalThis.codRetrieveOps.state(globalThis.__rec.job)") == "paused"
        n_paused, t_paused = len(fresh_proxy.seen), traffic(worker)

        release.set()                             # the reads under way when paused land ...
        # ... and each running series, its landed chunk taken, parks at the paused gate
        wait_in(worker, f"() => globalThis.__rec.pendingReads === 0 && globalThis.__traffic().gated === {CONCURRENCY}",
                what="every running series parked at the pause")
        n_landed, t_landed = len(fresh_proxy.seen), traffic(worker)
        worker.evaluate(LOOP_TURNS)               # ... and then nothing moves
        n_later, t_later = len(fresh_proxy.seen), traffic(worker)
        assert worker.evaluate("globalThis.__rec.whilePaused") == []
        assert n_paused == n_landed == n_later                       # no request reached the bucket
        assert t_paused["requests"] == t_landed["requests"] == t_later["requests"]
        assert t_landed["bodyBytes"] == t_later["bodyBytes"]          # not a byte read after they landed
        assert not page.evaluate("document.body.dataset.jobState")   # still paused, not ended

        page.get_by_role("button", name="Resume").click()
        page.wait_for_selector("body[data-job-state]", timeout=120_000)
        assert page.evaluate("document.body.dataset.jobState") == "done", page.locator("#errors").inner_text()
    finally:
        release.set()
    assert worker.evaluate("globalThis.__rec.whilePaused") == []     # nothing begun in the whole pause
    assert page.locator("#pause").inner_text() == "Pause"
    statuses = page.locator("#series-table tbody td:last-child").all_inner_texts()
    assert statuses == ["saved"] * len(study.series)
    got = read_folder(page, "paused")
    got.pop("log.json")
    assert got == expected_files(bucket_server.url, study)
    # Every tar fetched once, whole, without Range: nothing was lost or fetched again.
    tars = [s for s in fresh_proxy.seen if s.method == "GET" and s.path.split("?")[0].endswith(".tar")]
    assert len(tars) == len(study.series) and all(s.range is None and s.status == 200 for s in tars)
    sizes = dict(tars_by_size(bucket_server, study))
    assert all(s.body_bytes == sizes[s.path.split("?")[0].rsplit("/", 1)[1]] for s in tars)
