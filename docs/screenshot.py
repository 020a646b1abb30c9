"""Screenshots of the demo page (`python -m emotion_lab.serve`) in headless Chromium.

    python docs/screenshot.py <run_dir> [--text "..."] [--out docs/demo_page.png]

Starts the service on a free localhost port, opens / in Debian's chromium (with
chromium-driver and `pip install selenium`; .ci/run installs both), types the text, waits for
the scores and the highlighted words, and saves a desktop-width and a phone-width PNG
(`--out` and its `_phone` twin). The tests drive the page with the same `browser()`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# Chromium reaches for Google's services at start; on a closed network each attempt fails
# slowly, so the background fetchers are off.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None where either is missing."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@contextlib.contextmanager
def browser(width: int = 1100, height: int = 1000) -> Iterator:
    """A headless Chromium driven by Selenium, with a fresh profile; never downloads a driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed: apt-get install chromium "
                           "chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try the network
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = found[0]
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                     f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(found[1]), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@contextlib.contextmanager
def serving(run_dir: str | Path, timeout: float = 120) -> Iterator[str]:
    """`python -m emotion_lab.serve run_dir=...` on a free port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "emotion_lab.serve", f"run_dir={run_dir}",
                               f"port={port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(server.stdout.read().decode()) from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the service did not answer in {timeout:.0f} s") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def analyze_in_page(driver, url: str, text: str, timeout: float = 60) -> None:
    """Open the page, type `text`, submit, and wait until the words are highlighted."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#emotion option"))
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "analyze").click()
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#highlighted .word")
        or d.find_element(By.ID, "error").is_displayed())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--text", default="Thank you so much for the help, I was so worried "
                                          "but now I'm relieved and happy!")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "demo_page.png")
    args = parser.parse_args()
    with serving(args.run_dir) as url:
        for width, height, path in ((1100, 1500, args.out),
                                    (390, 1400, args.out.with_stem(args.out.stem + "_phone"))):
            with browser(width, height) as driver:
                analyze_in_page(driver, url, args.text)
                driver.save_screenshot(str(path))
                print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
