"""The web view in a real headless Chromium (selenium + chromedriver): from the landing page
a person clicks through to a repository, its log, a commit and a file, at a phone's and a
desktop's width; each page is checked for what it must show and for not overflowing the
phone's screen sideways, and screenshotted into tests/artifacts/web/ (kept, to be looked
at). Skipped only when chromium, chromedriver or selenium is absent."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from storage.nostr.event import sign_event
from tests.daemon import ALICE, CAROL, Client, Daemon, now, pubkey_of
from tests.test_web_pages import publish_rich_repo

ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - the test extras install it
    webdriver = None

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER and webdriver),
                                reason="needs chromium, chromedriver and selenium")


def browser(profile: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--hide-scrollbars"):
        options.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def shoot(driver, name: str, width: str) -> None:
    """A full-page screenshot (DevTools: beyond the viewport) and the phone overflow check."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if width == "phone":
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone screen"
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    (ARTIFACTS / f"{name}-{width}.png").write_bytes(base64.b64decode(shot["data"]))


def click(driver, css: str, text: str | None = None) -> None:
    elements = driver.find_elements(By.CSS_SELECTOR, css)
    chosen = [e for e in elements if text is None or text in e.text]
    assert chosen, f"nothing to click at {css} {text or ''}"
    chosen[0].click()


async def test_click_through_at_phone_and_desktop_width(daemon: Daemon, tmp_path: Path) -> None:
    client = await Client.connect(daemon.ws_url)
    try:
        served = await publish_rich_repo(client, daemon, tmp_path)
        coord = f"30617:{pubkey_of(ALICE)}:demo"
        bug = sign_event(CAROL, 1621, "it crashes", [["a", coord], ["subject", "Crash on start"]], now() - 60)
        idea = sign_event(CAROL, 1621, "idea", [["a", coord], ["subject", "Support a config file"]], now() - 30)
        closed = sign_event(ALICE, 1632, "", [["e", bug.id, "", "root"], ["a", coord]], now())
        for event in (bug, idea, closed):
            assert (await client.publish(event))[0]
    finally:
        await client.close()
    driver = browser(tmp_path / "chromium-profile")
    try:
        for width, (w, h) in WIDTHS.items():
            driver.set_window_size(w, h)
            driver.get(daemon.http_url + "/")
            assert "grasp-relay" in driver.title
            shoot(driver, "1-landing", width)
            click(driver, "ul.repos a.name", "Demo")
            assert driver.current_url.endswith(served.base)
            assert "Demo project" in driver.find_element(By.CSS_SELECTOR, "article.markdown h1").text
            assert not driver.find_elements(By.CSS_SELECTOR, "article.markdown script")
            shoot(driver, "2-summary", width)
            click(driver, "nav.tabs a", "log")
            assert "/log" in driver.current_url
            assert len(driver.find_elements(By.CSS_SELECTOR, "table.commits tbody tr")) == len(served.commits)
            shoot(driver, "3-log", width)
            click(driver, "table.commits a", "Say hello properly")
            assert f"/commit/{served.commits[3]}" in driver.current_url
            assert driver.find_elements(By.CSS_SELECTOR, "pre.patch span.add")
            assert driver.find_elements(By.CSS_SELECTOR, "pre.patch span.del")
            shoot(driver, "4-commit", width)
            click(driver, "nav.tabs a", "tree")
            click(driver, "table.tree a", "src/")
            click(driver, "table.tree a", "app.py")
            assert "/blob/src/app.py" in driver.current_url
            assert driver.find_element(By.CSS_SELECTOR, "td.linenos").text.split()[:2] == ["1", "2"]
            shoot(driver, "5-blob", width)
            click(driver, "nav.tabs a", "refs")
            shoot(driver, "6-refs", width)
            click(driver, "nav.tabs a", "issues")
            statuses = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "ul.threads .status")]
            assert statuses == ["open", "closed"]
            shoot(driver, "7-issues", width)
    finally:
        driver.quit()
    assert len(list(ARTIFACTS.glob("*.png"))) >= 14
