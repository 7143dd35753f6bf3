"""Browser end-to-end fixtures: the built site, headless Debian Chromium
(Playwright), and the folder picker substituted by an OPFS folder (headless
Chromium rejects the real picker). Helpers live in support/browser.py."""

from __future__ import annotations

import pytest

import build
from support.browser import CHROMIUM, CHROMIUM_ARGS, PICKER, open_page
from support.orthanc_study import orthanc, orthanc_study, own_orthanc_study  # noqa: F401 - fixtures (DICOMweb)


@pytest.fixture(scope="session")
def site_url():
    build.build_site()
    server, url = build.serve_site()
    yield url.rstrip("/")
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    """Per module: Playwright's sync API runs an event loop in this thread while
    it is open, and the CPython tests that follow need asyncio.run()."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = open_page(browser, PICKER)
    yield pg
    pg.context.close()
