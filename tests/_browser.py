"""Headless Debian Chromium for the page and map tests: a driver at an exact viewport size, a uvicorn server in
a thread, and geometry read back from the page (what the user sees, not the page's source).

Skips when chromium / chromedriver / selenium are missing, except that CI=true turns that into a failure."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time

import pytest

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1000"]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}  # CSS pixels; the phone is an iPhone 12-14's viewport


def need(ok, why: str) -> None:
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required in CI: apt-get install -y chromium chromium-driver; pip install selenium)")
        pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn in a background thread, stopped via should_exit (no process to leak)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def chromium(profile_dir, size: str = "desktop"):
    """A selenium Chrome driver whose viewport is exactly SIZES[size] (a phone also reports itself as mobile)."""
    chromium_bin = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    need(chromium_bin and driver_bin, "chromium / chromedriver not installed (apt-get install -y chromium "
                                      "chromium-driver, as .ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "selenium not installed")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not try to download a driver
    opts = Options()
    opts.binary_location = chromium_bin
    for f in CHROME_FLAGS + [f"--user-data-dir={profile_dir}"]:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        w, h = SIZES[size]
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": size == "phone"})
        yield driver
    finally:
        driver.quit()


def wait_settled(driver, timeout: float = 15.0) -> None:
    """Wait until the map has finished its zoom/pan animation and every tooltip has faded in: Leaflet adds
    `leaflet-zoom-anim` / `leaflet-pan-anim` while it animates and fades overlays in from opacity 0, and Chromium
    reports a still-transparent tooltip as having no text (a CI failure read '' for a label drawn 0.1 s earlier)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("""
        if (document.querySelector('.leaflet-zoom-anim, .leaflet-pan-anim')) return false;
        return Array.from(document.querySelectorAll('.leaflet-tooltip, .leaflet-popup')).every(function (e) {
          return parseFloat(getComputedStyle(e).opacity) >= parseFloat(e.style.opacity || '0.9') - 0.01; });"""))


def rect(driver, selector: str) -> dict:
    """The first matching element's bounding box in CSS pixels of the viewport (left, top, right, bottom, width,
    height), as the user sees it; fails when nothing matches."""
    r = driver.execute_script("var e = document.querySelector(arguments[0]);"
                              "return e ? e.getBoundingClientRect().toJSON() : null;", selector)
    assert r is not None, f"nothing matches {selector}"
    return r


def rects(driver, selector: str) -> list[dict]:
    return driver.execute_script("return Array.from(document.querySelectorAll(arguments[0]))"
                                 ".map(function (e) { return e.getBoundingClientRect().toJSON(); });", selector)


def topmost_class(driver, x: float, y: float) -> str:
    """The class of the element the user sees (and would click) at viewport point (x, y)."""
    return driver.execute_script("var e = document.elementFromPoint(arguments[0], arguments[1]);"
                                 "return e ? (e.getAttribute('class') || e.tagName) : '';", x, y)


def inside(inner: dict, outer: dict, tol: float = 0.5) -> bool:
    return (inner["left"] >= outer["left"] - tol and inner["right"] <= outer["right"] + tol
            and inner["top"] >= outer["top"] - tol and inner["bottom"] <= outer["bottom"] + tol)


def screenshot(driver, path, full_page: bool = False) -> None:
    """A PNG of the viewport, or with full_page of the whole page as it scrolls (a phone's column)."""
    if not full_page:
        driver.save_screenshot(str(path))
        return
    import base64

    w, h = driver.execute_script("return [document.documentElement.scrollWidth, "
                                 "document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                            "clip": {"x": 0, "y": 0, "width": w, "height": h,
                                                                     "scale": 1}})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
