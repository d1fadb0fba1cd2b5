"""Browser tests: Playwright for Python driving Debian's Chromium (headless)
against the live server, a real Celery worker and two real Cog servers."""

import os
from pathlib import Path

import pytest

from tests.conftest import COG_PREDICTOR_DIR, ROOT, CogServer

CHROMIUM = os.environ.get("LIGHTBOX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "a long enough passphrase"
# The pages' screenshots and accessibility checks: each width in each colour scheme.
LAYOUTS = [
    ("desktop", DESKTOP, "light"),
    ("phone", PHONE, "dark"),
    ("desktop-dark", DESKTOP, "dark"),
    ("phone-light", PHONE, "light"),
]


def _missing(what):
    # In CI a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing (see .ci/run)")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="package")
def browser():
    """One Chromium for the browser tests. Playwright's sync API keeps an event
    loop running in this thread while it lives, so Django would refuse the ORM
    calls the tests make around it; they are plain synchronous code, hence
    DJANGO_ALLOW_ASYNC_UNSAFE for this package only (not for the tests after it,
    e.g. `check --deploy` warns about it)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser):
    """new_page(viewport=..., color_scheme=...) -> a page in a fresh context (no cookies)."""
    contexts = []

    def make(viewport=DESKTOP, color_scheme="light"):
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.csp_violations = []
        page.on(
            "console",
            lambda message: (
                page.csp_violations.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def second_cog_server(site):
    server = CogServer(COG_PREDICTOR_DIR).uploading().start()
    yield server
    server.stop()


@pytest.fixture
def two_versions(transactional_db, cog_server, second_cog_server):
    """Two models, each on its own Cog server, so both cards run at once."""
    from app.services import catalog

    versions = [
        catalog.import_version(cog_server.url, "local/tiny-sd"),
        catalog.import_version(second_cog_server.url, "local/tiny-sdxl"),
    ]
    for version in versions:
        catalog.refresh_availability(version, max_age=0)
    return versions


def sign_up(page, base, username):
    page.goto(base + "/account/signup")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(base + "/")


def log_in(page, base, username):
    page.goto(base + "/account/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/")


def axe_violations(page):
    """Serious and critical accessibility violations axe-core finds on the page."""
    if not AXE.exists():
        _missing(f"axe-core at {AXE} (npm ci)")
    page.evaluate(AXE.read_text() + "\n;0")
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:5])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
