"""Shared set-up of the browser tests: Debian's chromium driven by Playwright (no browser download).

`sync_api()` skips the calling test module, saying why, when /usr/bin/chromium (install it with
.ci/install_chromium.sh) or the playwright package is missing. Screenshots go to
`artifacts_dir()`: $RLHF_TEST_ARTIFACTS, else test-artifacts/ (gitignored; CI keeps them).
"""
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT = 15_000  # ms
ROOT = Path(__file__).resolve().parents[1]


def sync_api():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run .ci/install_chromium.sh", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def artifacts_dir() -> Path:
    out = Path(os.environ.get("RLHF_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium_browser():
    """One headless Chromium per test module (import it as the module's `browser` fixture)."""
    with sync_api().sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def login_page(browser, url: str, name: str, password: str, width: int = 1280, height: int = 800):
    """A new page logged in to the annotation app at `url` as `name` (a fresh browser context,
    so each page has its own session)."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector(f"#whoami:has-text('Logged in as {name}')")
    return page


@contextmanager
def serving(store, cfg):
    """The annotation app for `store` with AppConfig `cfg`, on a free port of 127.0.0.1 in this
    process; yields its URL and closes the app after (the store is the caller's)."""
    from collect.app import build_app, launch

    app = build_app(store, cfg)
    try:
        yield launch(app, store, port=free_port(), prevent_thread_lock=True, quiet=True)
    finally:
        app.close()
