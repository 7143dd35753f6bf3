"""Chromium's real folder picker, answered as a person would: shared by
``e2e/test_real_picker.py`` and ``bench/bench_download.py --real-folder``.

A headed Debian Chromium runs on its own Xvfb display; xdotool answers the GTK
dialog ("Select where this site can save changes": ctrl+l, the folder's path, a
click on "Open") and then clicks "Allow" in Chromium's "Allow this site to edit
files?" prompt.

Chromium's prompt is drawn inside the browser window (it is no X window of its own),
so it is found on a screenshot of the display: the "Allow" button is the pale-blue
pill just right of the focused dark-blue "Don't Allow" button.

Every wait polls a condition under a generous safety timeout; a failed step raises
``PickerError`` (an ``AssertionError``) naming a screenshot of the whole display.

Needs the Debian packages ``xvfb``, ``xdotool`` and ``imagemagick`` (``import``), which
``python3 build.py setup`` installs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from support.browser import CHROMIUM, CHROMIUM_ARGS

DIALOG_TITLE = "Select where this site can save changes"
ALLOW_FILL = (0xD3, 0xE3, 0xFD)        # the unfocused "Allow" button
SCREEN = (1280, 900)
TOOLS = ("Xvfb", "xdotool", "import")

# Headed Chromium on the display. Safe Browsing stays on (its after-write check runs on
# every close(), as for users), but its lookups resolve nowhere: no DNS query leaves this
# machine, and none waits on a slow resolver.
HEADED_ARGS = [*CHROMIUM_ARGS, "--window-size=1200,800",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def missing_tools() -> list[str]:
    """What of Xvfb, xdotool, ImageMagick's import and Chromium is not installed."""
    out = [t for t in TOOLS if not shutil.which(t)]
    return out + ([CHROMIUM] if not os.path.exists(CHROMIUM) else [])


class PickerError(AssertionError):
    """A step of answering the picker failed; the message names a screenshot."""


# --------------------------------------------------------------------------- the display
class Display:
    """An Xvfb server on a display number it picks itself (-displayfd), plus the
    xdotool and ImageMagick calls made on it."""

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
        raise PickerError(f"{what} (screenshot: {path})")


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


def click_allow(display: Display, tries: int = 5) -> int:
    """Click "Allow" until the prompt has gone; returns how many clicks were lost.

    On a loaded machine a click can be lost (presumably Chromium's guard against clicks
    on a prompt that has only just been shown) and the prompt stays. After each click the
    pointer leaves the button (hovered or pressed, it is not ALLOW_FILL), and the prompt
    counts as gone once it has been off the screen for 0.6 s; still there after 3 s, it
    is clicked again."""
    allow = poll(display, "no 'Allow this site to edit files?' prompt", lambda: find_allow_button(display))
    for lost in range(tries):
        display.click(*allow)
        display.xdotool("mousemove", "--sync", "1", str(SCREEN[1] - 1))
        deadline, gone_since = time.monotonic() + 3.0, None
        while True:
            allow, now = find_allow_button(display), time.monotonic()
            if allow is None:
                gone_since = gone_since or now
                if now - gone_since >= 0.6:
                    return lost
            else:
                gone_since = None
                if now > deadline:
                    break
            time.sleep(0.2)
    display.fail(f"the 'Allow' prompt is still there after {tries} clicks")


def answer_folder_picker(display: Display, folder: Path) -> int:
    """Answer the picker Chromium has just been asked to show, as a person would:
    type the folder's path into the GTK dialog, click "Open", then "Allow" (returns
    how many clicks on "Allow" were lost: ``click_allow``)."""
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
    return click_allow(display)


def disk_files(folder: Path) -> dict:
    """Every file below `folder` on the real disk: relative path -> size, sha256."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[path.relative_to(folder).as_posix()] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return out
