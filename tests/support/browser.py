"""A real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's sync API.

Playwright's own browser downloads are never used (no `playwright install`): the Debian package
is launched through executable_path, each launch in a new, empty temporary user-data-dir, which
Playwright makes and deletes itself. Pages opened with new_page() (or the `page` fixture) can
reach loopback addresses only: anything else is aborted, so a test never leaves this machine.

If chromium or playwright is missing this FAILS (no skip): `make test` installs them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        f"{exc}: the Python package playwright is missing: run `make test` to install it"
    ) from exc

CHROMIUM_PATH = os.environ.get("MOVIEREC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
INSTALL_HINT = "run `make test` (ops/install-test-tools.sh installs the test tools)"


def artifacts_dir() -> Path:
    """Where screenshots of failures go: $MOVIEREC_TEST_ARTIFACTS or a temp directory."""
    default = Path(tempfile.gettempdir()) / "movierec-test-artifacts"
    path = Path(os.environ.get("MOVIEREC_TEST_ARTIFACTS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def launch_browser(
    executable_path: str = CHROMIUM_PATH, args: list[str] | None = None, timeout_ms: float = 20_000
) -> Iterator[Browser]:
    """Start headless Chromium; yield a playwright Browser; close it (and Playwright) after."""
    if not os.access(executable_path, os.X_OK):
        raise RuntimeError(f"Chromium not found at {executable_path}: {INSTALL_HINT}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable_path,
            args=CHROMIUM_ARGS if args is None else args,
            headless=True,
            chromium_sandbox=False,
            timeout=timeout_ms,
        )
        try:
            yield browser
        finally:
            browser.close()


def _loopback_only(route: Route) -> None:
    url = urlsplit(route.request.url)
    if url.scheme in {"http", "https", "ws", "wss"} and url.hostname not in LOOPBACK_HOSTS:
        route.abort("blockedbyclient")
    else:
        route.continue_()


def loopback_only(context: BrowserContext) -> BrowserContext:
    """Abort every request of `context` that is not to a loopback host (e.g. web fonts)."""
    context.route("**/*", _loopback_only)
    return context


@contextmanager
def new_page(browser: Browser, timeout_ms: float = 10_000) -> Iterator[Page]:
    """A page in a fresh browser context (own cookies), loopback only; closed after."""
    context = loopback_only(browser.new_context())
    context.set_default_timeout(timeout_ms)
    try:
        yield context.new_page()
    finally:
        context.close()


def save_screenshot(page: Page, name: str, directory: Path | None = None) -> Path:
    """Save a full-page PNG and the page's HTML beside it; return the PNG's path."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:150]
    path = (directory or artifacts_dir()) / f"{stem}.png"
    page.screenshot(path=str(path), full_page=True)
    path.with_suffix(".html").write_text(page.content(), encoding="utf-8")
    return path


def _screenshot_note(page: Page, name: str, directory: Path | None) -> str:
    try:
        path = save_screenshot(page, name, directory)
    except Exception as exc:  # the page may be gone already
        return f"no screenshot of {page.url} ({exc})"
    return f"screenshot of {page.url} at failure: {path} (HTML beside it)"


@contextmanager
def screenshot_on_failure(page: Page, name: str, directory: Path | None = None) -> Iterator[Page]:
    """Run a block; if it raises, save a screenshot and add its path to the error."""
    try:
        yield page
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # AssertionError, playwright's errors, pytest.fail()
        exc.add_note(_screenshot_note(page, name, directory))
        raise


# --- pytest fixtures; import them (and the hook) into a conftest.py ------------------------

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keeps each phase's report on the item, so the `page` fixture knows if the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole test session."""
    with launch_browser() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page (own context and cookies, loopback only); screenshot saved if the test fails."""
    with new_page(browser) as fresh:
        yield fresh
        report = request.node.stash.get(_REPORTS, {}).get("call")
        if report is not None and report.failed:
            note = _screenshot_note(fresh, request.node.nodeid, None)
            report.sections.append(("browser", note))
