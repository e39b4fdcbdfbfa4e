"""Headless Debian Chromium driven by Selenium through Debian's chromedriver (scripts/setup.sh installs both):
no browser download, no display, no network beyond loopback. Shared by the /ui tests and scripts/measure_ui.py."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("PTBR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PTBR_CHROMEDRIVER", "/usr/bin/chromedriver")

# Headless, no sandbox (containers run as root), and nothing that phones home or updates itself.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--autoplay-policy=no-user-gesture-required",  # the page starts playback from clicks; the driver's clicks count too
    "--use-fake-device-for-media-stream",  # a synthetic microphone (a beep) for the recording test
    "--use-fake-ui-for-media-stream",  # grant the microphone without a permission prompt
)


def missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing: run scripts/setup.sh (it installs Debian's chromium and chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(language: str = "pt-BR", width: int = 1280, height: int = 1000) -> Iterator:
    """A fresh headless Chromium (its own throw-away profile) whose navigator.language is ``language``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ptbr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--lang={language}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_png(driver, path: Path) -> Path:
    """A screenshot of the whole page, not just the viewport (Chrome DevTools' captureBeyondViewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@contextlib.contextmanager
def phone_screen(driver, width: int = 360, height: int = 740) -> Iterator[None]:
    """Render as a phone does: a ``width`` CSS-pixel viewport with overlay scrollbars (DevTools device emulation;
    a headless window cannot be made narrower than 500 px)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def fetch_bytes(driver, url_expression: str) -> bytes:
    """The bytes behind a URL as the page sees it (e.g. a blob: URL the page made), fetched inside the page."""
    encoded = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(%s).then((r) => r.blob()).then((blob) => {
          const reader = new FileReader();
          reader.onload = () => done(String(reader.result).split(',')[1] || '');
          reader.readAsDataURL(blob);
        }).catch((error) => done('ERROR ' + error));
        """ % url_expression
    )
    assert not encoded.startswith("ERROR"), encoded
    return base64.b64decode(encoded)
