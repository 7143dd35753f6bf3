"""Zip mode in WebKitGTK (Safari's engine; Debian `webkit2gtk-driver`, Selenium,
under `xvfb-run`). There is no `navigator.storage` here under WebDriver, but
service workers work (WebKitGTK 2.50, 127.0.0.1 is a secure context): each
zip streams through `cod-sw.js` into the browser's download, which lands in
$HOME (the driver's download folder). The page's "Download as zip" button is
pressed; the files that land must be valid zips of the bucket's instances.
Should an engine take the in-memory path instead (`<a download>` of a Blob),
the bytes behind the link's object URL are checked the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from support.browser import ROOT
from test_zip import check_study_zips, page_url

DRIVER = "/usr/bin/WebKitWebDriver"

SCRIPT = r"""
import base64, json, os, sys, time, zipfile
from pathlib import Path
from selenium import webdriver
from selenium.webdriver.support.wait import WebDriverWait

url, out_dir = sys.argv[1], Path(sys.argv[2])
# Records every <a download> click (the download itself still happens).
CAPTURE = '''
window.__clicks = [];
const orig = HTMLAnchorElement.prototype.click;
HTMLAnchorElement.prototype.click = function () {
  if (this.download) window.__clicks.push({ href: this.href, name: this.download });
  return orig.call(this);
};
'''
d = webdriver.WebKitGTK(service=webdriver.WebKitGTKService(executable_path="/usr/bin/WebKitWebDriver"))
res = {}
try:
    d.set_script_timeout(120)
    d.get(url)
    WebDriverWait(d, 180, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.body.dataset.ready || ''"))
    res["storage"] = d.execute_script("return !!(navigator.storage && navigator.storage.getDirectory)")
    res["pickerNote"] = d.execute_script("return !document.getElementById('picker-note').hidden")
    d.execute_script(CAPTURE)
    # Keeps the page's Job (window.__job): its traffic() counts the bytes streamed.
    d.execute_async_script('''
      const cb = arguments[arguments.length - 1];
      import('./cod-retrieve.mjs').then((m) => {
        const download0 = m.CodDownload.prototype.download;
        m.CodDownload.prototype.download = async function (...a) { return (window.__job = await download0.apply(this, a)); };
        cb(true);
      });
    ''')
    res["names"] = []
    t0 = time.time()
    d.find_element("id", "download-zip").click()
    WebDriverWait(d, 300, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.body.dataset.jobState || ''"))
    res["seconds"] = time.time() - t0     # reported, never asserted on
    res["state"] = d.execute_script("return document.body.dataset.jobState || ''")
    res["inWorker"] = d.execute_script("return window.__job._rt.local !== true")
    res["errors"] = d.execute_script("return document.getElementById('errors').innerText")
    res["overall"] = d.execute_script("return document.getElementById('overall-text').innerText")
    res["serviceWorker"] = d.execute_script("return !!(navigator.serviceWorker && navigator.serviceWorker.controller)")
    frames = d.execute_script(
        "return [...document.querySelectorAll('iframe')].map(f => f.src).filter(s => s.includes('/__cod-download__/'))")
    res["streamed"] = [f.rsplit("/", 1)[-1] for f in frames]
    if frames:
        # Streamed downloads land in $HOME. Every zip byte went through the stream
        # (the job's traffic().stream counts them), so the downloads are complete once the streamed
        # zips are all there, together exactly that many bytes (none ever grows past
        # its final size), each a whole zip.
        streamed = d.execute_script("return window.__job.traffic().stream.bytes")
        assert isinstance(streamed, int), streamed
        res["streamedBytes"] = streamed
        home = Path(os.environ["HOME"])

        def whole_zip(p):
            try:
                with zipfile.ZipFile(p) as zf:
                    return zf.testzip() is None and len(zf.namelist()) > 0
            except (OSError, zipfile.BadZipFile):
                return False

        def landed(_):
            paths = [home / n for n in res["streamed"]]
            return (all(p.is_file() for p in paths) and sum(p.stat().st_size for p in paths) == streamed
                    and all(whole_zip(p) for p in paths))
        WebDriverWait(d, 120, poll_frequency=0.2).until(landed)
        for p in home.glob("*.zip"):
            (out_dir / p.name).write_bytes(p.read_bytes())
            res["names"].append(p.name)
    clicks = d.execute_script("return window.__clicks")
    for c in clicks:
        b64 = d.execute_async_script('''
          const [href, cb] = arguments;
          fetch(href).then(r => r.arrayBuffer()).then(buf => {
            const u8 = new Uint8Array(buf); let s = '';
            for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
            cb(btoa(s));
          }).catch(e => cb('ERR ' + e));
        ''', c["href"])
        assert not b64.startswith("ERR"), b64
        (out_dir / c["name"]).write_bytes(base64.b64decode(b64))
        res["names"].append(c["name"])
    # The start the page made kept a memory snapshot of Python in Cache Storage; a second
    # start from it (Python on the page's own thread, as {worker: false} runs it) restores
    # it. (Not across a reload: under WebDriver here, the cache was empty after one.)
    STARTED = ("const cb = arguments[arguments.length - 1];"
               "import('./cod-retrieve.mjs').then((m) => m.pythonStarted()).then(cb, (e) => cb(String(e)));")
    res["started"] = [d.execute_async_script(STARTED)]
    WebDriverWait(d, 60, poll_frequency=0.2).until(lambda d: d.execute_async_script(
        "const cb = arguments[0]; caches.open('cod-retrieve-python').then((c) => c.keys())"
        ".then((k) => cb(k.length > 0), () => cb(false));"))
    res["started"].append(d.execute_async_script(
        "const cb = arguments[0]; import('./cod-retrieve.mjs').then((m) => m.loadRuntime())"
        ".then(() => cb({ ...globalThis.codRetrievePython, where: 'page' }), (e) => cb(String(e)));"))
finally:
    d.quit()
print(json.dumps(res))
"""


@pytest.mark.skipif(not os.path.exists(DRIVER) or not shutil.which("xvfb-run"), reason="no WebKitGTK driver or xvfb")
def test_webkit_zip(site_url, bucket_server, demo_studies, tmp_path):
    out = tmp_path / "zips"
    out.mkdir()
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    r = subprocess.run(["xvfb-run", "-a", sys.executable, "-c", SCRIPT,
                        page_url(site_url, bucket_server, demo_studies), str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["state"] == "done", res
    assert res["inWorker"]                          # Python ran in the module's Worker
    assert res["pickerNote"] and not res["storage"]
    names = sorted(f"{s.study_uid}.zip" for s in demo_studies)
    assert sorted(res["names"]) == names, res
    assert res["serviceWorker"] and sorted(res["streamed"]) == names, res   # the service-worker path
    total = check_study_zips(out, demo_studies, bucket_server)
    print(f"\nzip mode, WebKitGTK page (service-worker stream): {total / 1e6:.1f} MB of zips in {res['seconds']:.2f} s; "
          "Python started " + ", then ".join(f"{s['from']} in {s['seconds']:.2f} s" for s in res["started"]))
    assert [(s["from"], s["where"]) for s in res["started"]] == [("fresh", "worker"), ("snapshot", "page")], res
