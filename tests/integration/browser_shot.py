"""Headless Chromium for the dashboard tests, as a library and as a program.

:func:`start_browser` starts Debian's ``chromium`` through ``chromedriver`` with the
flags a root test run needs and the browser log kept. Run as a program (for an agent
whose control API is on the loopback of another network namespace: ``ip netns exec
NS python browser_shot.py ...``), it opens one dashboard page, waits until the page
drew its data and an optional CSS selector matches, saves a screenshot and prints
JSON: the page's text, the graph's node titles and edge count, and the SEVERE
entries of the browser log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1366,1800",
)  # fmt: skip


def start_browser(profile: str) -> Any:
    """A Chromium WebDriver using the fresh user data directory ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    return driver


def open_page(driver: Any, base: str, page: str, timeout: float = 60.0) -> None:
    """Load the dashboard on ``page`` and wait until the page drew its data."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/#{page}")
    selector = f'main[data-page="{page}"][data-loaded="1"]'
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))


def severe(driver: Any) -> list[dict[str, Any]]:
    """SEVERE entries of the browser log since the last call."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


GRAPH = """
const svg = document.querySelector(arguments[0]);
if (!svg) return null;
return {
  nodes: [...svg.querySelectorAll("circle.node title")].map((t) => t.textContent),
  edges: svg.querySelectorAll("line.edge").length,
};
"""


def main(argv: list[str] | None = None) -> int:
    """Open one page, screenshot it, print what it shows as JSON."""
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", help="the control API's base URL, e.g. http://127.0.0.1:4080")
    parser.add_argument("page", help="dashboard page, e.g. topology")
    parser.add_argument("screenshot", help="PNG file to write")
    parser.add_argument("--wait-for", default="", help="CSS selector to wait for")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        driver = start_browser(profile)
        try:
            open_page(driver, args.base, args.page, args.timeout)
            if args.wait_for:
                WebDriverWait(driver, args.timeout).until(
                    lambda d: d.execute_script(
                        "return document.querySelector(arguments[0]) !== null;", args.wait_for
                    )
                )
            out = {
                "text": driver.execute_script("return document.getElementById('page').innerText;"),
                "graph": driver.execute_script(GRAPH, "#page svg.graph"),
                "screenshot": driver.save_screenshot(args.screenshot),
                "severe": severe(driver),
            }
        finally:
            driver.quit()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
