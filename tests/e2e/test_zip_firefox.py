"""Zip mode in Firefox ESR (Debian `firefox-esr`, headless), driven by
Puppeteer-core over WebDriver BiDi from a node script: the page's "Download as
zip" button for two studies; the zips Firefox saves are checked against the
bucket (entries, SHA-256, zipfile and unzip -t)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from support.browser import ROOT
from test_zip import check_study_zips, page_url

FIREFOX = "/usr/bin/firefox-esr"

SCRIPT = r"""
import puppeteer from "puppeteer-core";
import fs from "node:fs";
import path from "node:path";

const [url, downloadPath] = process.argv.slice(1);
const browser = await puppeteer.launch({
  browser: "firefox", executablePath: "/usr/bin/firefox-esr", headless: true,
  extraPrefsFirefox: { "browser.download.useDownloadDir": true, "browser.download.folderList": 2,
                       "browser.download.dir": downloadPath, "browser.download.always_ask_before_handling_new_types": false },
});
const out = { logs: [] };
let page = null;
try {
  const ctx = await browser.createBrowserContext({ downloadBehavior: { policy: "allow", downloadPath } });
  page = await ctx.newPage();
  page.on("console", (m) => out.logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.logs.push(`pageerror: ${e}`));
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 120000 });
  const t0 = Date.now();
  await page.click("#download-zip");
  await page.waitForSelector("body[data-job-state]", { timeout: 300000 });
  out.seconds = (Date.now() - t0) / 1000;
  out.state = await page.evaluate(() => document.body.dataset.jobState);
  out.errors = await page.evaluate(() => document.getElementById("errors").innerText);
  out.overall = await page.evaluate(() => document.getElementById("overall-text").innerText);
  out.pickerNote = await page.evaluate(() => !document.getElementById("picker-note").hidden);
  // Firefox writes "<name>.part" and renames it when done: wait until no .part
  // is left and every expected zip is whole (it ends with an end-of-central-
  // directory record that matches its own length). The deadline is a safety net.
  const want = process.env.WANT_ZIPS.split(",");
  const whole = (file) => {
    let buf;
    try { buf = fs.readFileSync(path.join(downloadPath, file)); } catch { return false; }
    if (buf.length < 22) return false;
    const eocd = buf.length - 22;
    if (buf.readUInt32LE(eocd) !== 0x06054b50 || buf.readUInt16LE(eocd + 20) !== 0) return false;
    const entries = buf.readUInt16LE(eocd + 10), size = buf.readUInt32LE(eocd + 12), offset = buf.readUInt32LE(eocd + 16);
    if (offset === 0xffffffff || size === 0xffffffff || entries === 0xffff)   // ZIP64: its locator precedes
      return eocd >= 20 && buf.readUInt32LE(eocd - 20) === 0x07064b50;
    return entries > 0 && offset + size === eocd;
  };
  const deadline = Date.now() + 120000;
  for (;;) {
    const names = fs.readdirSync(downloadPath);
    if (!names.some((n) => n.endsWith(".part")) && want.every(whole)) break;
    if (Date.now() > deadline) throw new Error(`downloads not complete: ${names.join(" ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  out.files = fs.readdirSync(downloadPath);
  // A repeat visit starts Python from the memory snapshot the first one kept in Cache Storage.
  const started = () => page.evaluate(() => import("./cod-retrieve.mjs").then((m) => m.pythonStarted()));
  out.started = [await started()];
  await page.waitForFunction(() => caches.open("cod-retrieve-python").then((c) => c.keys()).then((k) => k.length > 0),
                             { timeout: 60000 });
  await page.reload();
  await page.waitForSelector("body[data-ready='1']", { timeout: 120000 });
  out.started.push(await started());
} catch (e) {
  // What the page showed when it failed, for the test's message.
  out.failed = String(e?.stack ?? e).slice(0, 1500);
  const shown = () => ({ state: document.body.dataset.jobState ?? null, ready: document.body.dataset.ready ?? null,
                         overall: document.getElementById("overall-text")?.innerText,
                         errors: document.getElementById("errors")?.innerText });
  out.shown = await Promise.race([page?.evaluate(shown), new Promise((r) => setTimeout(() => r("no answer"), 10000))])
    .catch((err) => String(err));
  process.exitCode = 1;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(not os.path.exists(FIREFOX) or not shutil.which("node"), reason="no firefox-esr or node")
def test_firefox_zip_two_studies(site_url, bucket_server, demo_studies, tmp_path):
    dl = tmp_path / "downloads"
    dl.mkdir()
    url = page_url(site_url, bucket_server, demo_studies)
    env = dict(os.environ, WANT_ZIPS=",".join(f"{s.study_uid}.zip" for s in demo_studies),
               HOME=str(tmp_path / "home"))
    r = subprocess.run(["node", "--input-type=module", "-e", SCRIPT, url, str(dl)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["state"] == "done", out
    assert out["pickerNote"], "Firefox has no folder picker: the page says zip is used"
    assert sorted(out["files"]) == sorted(f"{s.study_uid}.zip" for s in demo_studies), out
    total = check_study_zips(dl, demo_studies, bucket_server)
    print(f"\nzip mode, Firefox page: {total / 1e6:.1f} MB of zips in {out['seconds']:.2f} s; Python started "
          + ", then ".join(f"{s['from']} in {s['seconds']:.2f} s" for s in out["started"]))
    assert [s["from"] for s in out["started"]] == ["fresh", "snapshot"], out["started"]
