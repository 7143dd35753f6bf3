"""pytest-pyodide tests: code that runs inside Pyodide, on node and headless Chromium.

Run them with ``python3 build.py test`` (all tests) or, after ``python3 build.py site``::

    .venv/bin/python -m pytest tests/pyodide --rt node,chrome            # selenium runner
    .venv/bin/python -m pytest tests/pyodide --rt chrome --runner playwright

Pyodide comes from ``build/site/pyodide`` (the same folder the site ships; its lock lists
only the shipped wheels: cod-retrieve, pydicom, micropip, packaging, pyodide-http). This
conftest points ``--dist-dir`` there when it is not given, keeps Selenium offline (it finds
``/usr/bin/chromium`` and ``/usr/bin/chromedriver``), launches Debian's Chromium for the
Playwright runner (Playwright's own browsers cannot be downloaded here), sets Chromium flags
that keep it off the network, and enables JSPI on node 20. The default runner of
``build.py test`` is selenium: it also supports ``selenium_worker`` (tests in a Web Worker)
and the plugin's JSPI fixtures, which Playwright does not.

Adding a test
-------------
Write ``tests/pyodide/test_<topic>.py``; each test is a plain function decorated with
``run_in_pyodide``, taking the ``selenium`` fixture first (it is the runtime, whatever the
name). The function body is shipped to Pyodide and run there, so import inside it::

    from pytest_pyodide import run_in_pyodide

    @run_in_pyodide(packages=["cod-retrieve"])      # lock names; pydicom comes as a dependency
    def test_something(selenium, payload):          # extra args are pickled from the host
        from cod_retrieve import tarstream
        assert ...

    def test_with_host_data(selenium):               # or build inputs on the host first
        data = make_tar_bytes()                      # host CPython 3.11
        check_in_pyodide(selenium, data)             # a run_in_pyodide function defined above

Notes:

* Every test runs once per runtime (``--rt node,chrome``): ids end in ``[node]``/``[chrome]``.
  Mark browser-only tests with ``@pytest.mark.xfail_browsers(node="why")`` or skip on
  ``selenium.browser == "node"`` inside a plain (host) test.
* ``selenium`` is module-scoped: Pyodide starts once per module and runtime (5 to 10 s) and
  state leaks between tests of a module; ``selenium_standalone`` gives a fresh one per test.
* Only packages in the lock can be loaded (no CDN); pytest is not shipped, so assertions in
  Pyodide are not rewritten (use explicit messages: ``assert a == b, (a, b)``).
* Arguments and return values cross by pickle: keep them bytes/str/int/list/dict.
* ``async def`` test functions work too (``run_in_pyodide`` awaits them); JSPI
  (``pyodide.ffi.run_sync``) works on Chromium; on node 20 only with an experimental flag.
* Each script (and the Pyodide load) may take ``$COD_PYODIDE_TIMEOUT`` s (default 120);
  ``@pytest.mark.driver_timeout(s)`` changes it for one test.
* Local test data over HTTP: ``from pytest_pyodide.server import spawn_web_server``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pytest_pyodide import get_global_config
from pytest_pyodide.runner import _BrowserBaseRunner

ROOT = Path(__file__).resolve().parents[2]
DIST_DIR = ROOT / "build" / "site" / "pyodide"

CHROME_FLAGS = [
    "--js-flags=--expose-gc",  # the plugin's default, needed for its leak checks
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
get_global_config().set_flags("chrome", CHROME_FLAGS)
# node 20 has JSPI (pyodide.ffi.run_sync) only behind this flag; Chromium 156 has it on.
get_global_config().set_flags("node", ["--experimental-wasm-stack-switching"])
# The plugin allows 20 s per script, including starting the browser and loading Pyodide:
# too tight on a loaded 2-core machine (seen: "script timeout" at setup). Per test:
# @pytest.mark.driver_timeout(seconds).
_BrowserBaseRunner.script_timeout = float(os.environ.get("COD_PYODIDE_TIMEOUT", "120"))
# Selenium: use /usr/bin/chromedriver, never let Selenium Manager go to the network.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")


def chromium_path() -> str:
    return os.environ.get("COD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    dist = getattr(config.option, "dist_dir", None)
    if dist is None:  # plugin disabled (-p no:pytest_pyodide)
        return
    if Path(dist) == Path("pyodide") and not Path("pyodide").exists():  # the plugin's default
        config.option.dist_dir = DIST_DIR
        from pytest_pyodide.hook import pytest_wrapper

        if getattr(pytest_wrapper, "pyodide_dist_dir", None) is not None:  # configured already
            pytest_wrapper.pyodide_dist_dir = DIST_DIR
    if not (Path(config.option.dist_dir) / "pyodide-lock.json").exists():
        raise pytest.UsageError(f"{config.option.dist_dir} has no Pyodide: run `python3 build.py site`")


class _LazyBrowsers(dict):
    """Launches a browser the first time a runner asks for it (node tests need none)."""

    def __init__(self, playwright):
        super().__init__()
        self._pw = playwright

    def __missing__(self, runtime: str):
        if runtime != "chrome":
            pytest.skip(f"Playwright here can only drive Debian's chromium, not {runtime}")
        browser = self._pw.chromium.launch(
            executable_path=chromium_path(),
            args=get_global_config().get_flags("chrome"),
            headless=True,
        )
        self[runtime] = browser
        return browser


@pytest.fixture(scope="session")
def _playwright_session(request):
    if request.config.option.runner.lower() != "playwright":
        yield {}
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browsers = _LazyBrowsers(pw)
        try:
            yield browsers
        finally:
            for b in list(browsers.values()):
                b.close()


@pytest.fixture(scope="module")
def playwright_browsers(_playwright_session):
    """Overrides the plugin's fixture: one Debian Chromium for the whole session."""
    return _playwright_session
