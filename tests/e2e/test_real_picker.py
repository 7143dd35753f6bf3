"""The hosted page with Chromium's real folder picker, answered as a person would.

No substitute for ``showDirectoryPicker``: a headed Debian Chromium runs on its own
Xvfb display; xdotool answers the GTK dialog ("Select where this site can save
changes": ctrl+l, the folder's path, a click on "Open") and then clicks "Allow" in
Chromium's "Allow this site to edit files?" prompt. The download goes through
``createWritable`` swap files into a real folder, which is then read back with plain
Python and compared with the bucket.

Chromium's prompt is drawn inside the browser window (it is no X window of its own),
so it is found on a screenshot of the display: the "Allow" button is the pale-blue
pill just right of the focused dark-blue "Don't Allow" button.

Every wait polls a condition (a window appears or goes, a button is seen, a page
attribute is set) under a generous safety timeout; a failed step leaves a screenshot
of the whole display whose path is in the assertion message.

Needs the Debian packages ``xvfb``, ``xdotool`` and ``imagemagick`` (``import``), which
``python3 build.py setup`` installs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from support.browser import CHROMIUM, CHROMIUM_ARGS, expected_files

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("Xvfb", "xdotool", "import")) or not os.path.exists(CHROMIUM),
    reason="no Xvfb, xdotool, ImageMagick or chromium (python3 build.py setup installs them)")

DIALOG_TITLE = "Select where this site can save changes"
ALLOW_FILL = (0xD3, 0xE3, 0xFD)        # the unfocused "Allow" button
SCREEN = (1280, 900)


# --------------------------------------------------------------------------- the display
class Display:
    """An Xvfb server on a display number it picks itself (-displayfd), plus the
    xdotool and ImageMagick calls the test makes on it."""

    def __init__(self, shots: Path):
        self.shots = shots
        self.shot_count = 0
        read_end, write_end = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
             "-nolisten", "tcp"],
            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_end)
        with os.fdopen(read_end) as f:      # Xvfb writes the number once it accepts clients
            number = f.readline().strip()
        if not number.isdigit():
            self.proc.kill()
            raise RuntimeError(f"Xvfb did not start (exit code {self.proc.wait()})")
        self.name = ":" + number
        self.env = dict(os.environ, DISPLAY=self.name)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def xdotool(self, *args: str) -> str:
        res = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=30)
        return res.stdout.strip()

    def windows(self) -> dict[str, str]:
        """Visible named windows: id -> title."""
        ids = self.xdotool("search", "--onlyvisible", "--name", ".").split()
        return {i: self.xdotool("getwindowname", i) for i in ids}

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        out = self.xdotool("getwindowgeometry", window)
        x, y = map(int, re.search(r"Position: (-?\d+),(-?\d+)", out).groups())
        w, h = map(int, re.search(r"Geometry: (\d+)x(\d+)", out).groups())
        return x, y, w, h

    def click(self, x: int, y: int) -> None:
        self.xdotool("mousemove", "--sync", str(x), str(y))
        self.xdotool("click", "1")

    def pixels(self) -> tuple[int, int, bytes]:
        """The whole screen as (width, height, RGB bytes), from ImageMagick's `import`."""
        raw = subprocess.run(["import", "-window", "root", "-depth", "8", "rgb:-"],
                             env=self.env, capture_output=True, timeout=30, check=True).stdout
        assert len(raw) == SCREEN[0] * SCREEN[1] * 3, f"{len(raw)} bytes from import"
        return SCREEN[0], SCREEN[1], raw

    def screenshot(self, what: str) -> Path:
        self.shot_count += 1
        path = self.shots / f"{self.shot_count:02d}-{re.sub(r'[^a-z0-9]+', '-', what.lower())}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, capture_output=True, timeout=30)
        return path

    def fail(self, what: str) -> None:
        path = self.screenshot(what)
        pytest.fail(f"{what} (screenshot: {path})")


def poll(display: Display, what: str, condition, timeout: float = 30.0, every: float = 0.1):
    """condition() until it returns something true; a screenshot and a failure after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            display.fail(f"{what}: not after {timeout:.0f} s")
        time.sleep(every)


# --------------------------------------------------------------------------- the prompt
_ALLOW_RUN = re.compile(b"(?:" + re.escape(bytes(ALLOW_FILL)) + b")+")


def _dark_blue(r: int, g: int, b: int) -> bool:
    return r < 60 and g < 120 and b > 150     # the focused "Don't Allow" button


def find_allow_button(display: Display) -> tuple[int, int] | None:
    """Centre of the "Allow" button of Chromium's edit-files prompt, or None while no
    such prompt is on the screen: 15 rows or more where a pale-blue run 50-300 px long
    has at least 20 dark-blue pixels (the other button's fill or focus ring) in the
    60 px left of it."""
    width, height, raw = display.pixels()
    rows: dict[int, list[tuple[int, int, int]]] = {}
    for y in range(height):
        line = raw[y * width * 3:(y + 1) * width * 3]
        for m in _ALLOW_RUN.finditer(line):
            if m.start() % 3:
                continue
            x0, x1 = m.start() // 3, m.end() // 3
            if not 50 <= x1 - x0 <= 300:
                continue
            dark = sum(_dark_blue(*line[3 * x:3 * x + 3]) for x in range(max(0, x0 - 60), x0))
            if dark >= 20:
                rows.setdefault((x0 + x1) // 16, []).append((y, x0, x1))
    for found in rows.values():
        if len(found) >= 15:
            y, x0, x1 = found[len(found) // 2]
            return (x0 + x1) // 2, y
    return None


def answer_folder_picker(display: Display, folder: Path) -> None:
    """Answer the picker Chromium has just been asked to show, as a person would:
    type the folder's path into the GTK dialog, click "Open", then "Allow"."""
    def dialog():
        return next((i for i, t in display.windows().items() if t == DIALOG_TITLE), None)
    window = poll(display, f"the dialog {DIALOG_TITLE!r} did not appear", dialog)
    display.xdotool("windowfocus", "--sync", window)       # no window manager: focus it ourselves
    display.xdotool("key", "--clearmodifiers", "ctrl+l")
    display.xdotool("type", "--delay", "15", str(folder) + "/")
    x, y, w, h = display.geometry(window)
    # "Open" is the dialog's bottom-right button (Return in the location bar aborts).
    display.click(x + w - 50, y + h - 24)
    poll(display, "the folder dialog did not close after the click on Open",
         lambda: window not in display.windows())
    allow = poll(display, "no 'Allow this site to edit files?' prompt", lambda: find_allow_button(display))
    display.click(*allow)


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
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=False, env=display.env,
                               # Safe Browsing stays on (its after-write check runs on every close(),
                               # as for users), but its lookups resolve nowhere: no DNS query leaves
                               # this machine, and none waits on a slow resolver.
                               args=[*CHROMIUM_ARGS, "--window-size=1200,800",
                                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        yield b
        b.close()


@pytest.fixture
def headed_page(headed_browser):
    context = headed_browser.new_context(accept_downloads=True)
    pg = context.new_page()
    pg.console_messages = []
    pg.on("console", lambda m: pg.console_messages.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: pg.console_messages.append(f"pageerror: {e}"))
    yield pg
    context.close()


def disk_files(folder: Path) -> dict:
    """Every file below `folder` on the real disk: relative path -> size, sha256."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[path.relative_to(folder).as_posix()] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return out


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
