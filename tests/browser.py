"""Open a report site in headless Debian Chromium and check what a person would see:
no console errors, every image decoded with a natural size > 0, every audio source
decodable, every link between pages resolving. Used by the report and end-to-end tests."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

_AUDIO_JS = """
const done = arguments[arguments.length - 1];
const srcs = [...document.querySelectorAll('audio')].map(a => a.currentSrc || a.src);
Promise.all(srcs.map(src => new Promise(resolve => {
  const a = new Audio();
  const t = setTimeout(() => resolve([src, 'timeout', 0]), 10000);
  a.addEventListener('loadedmetadata', () => { clearTimeout(t); resolve([src, 'ok', a.duration]); });
  a.addEventListener('error', () => { clearTimeout(t); resolve([src, 'error', 0]); });
  a.preload = 'auto'; a.src = src; a.load();
}))).then(done);
"""


@dataclass
class SiteCheck:
    pages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    images: int = 0
    audio: int = 0


def driver(user_data_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={user_data_dir}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def check_site(index: Path, work: Path, screenshot: Path | None = None) -> SiteCheck:
    """Visit every page reachable from `index` by relative links and collect problems."""
    result = SiteCheck()
    browser = driver(work / "chromium-profile")
    browser.set_script_timeout(60)
    try:
        todo, seen = [index.resolve()], set()
        while todo:
            page = todo.pop()
            if page in seen:
                continue
            seen.add(page)
            result.pages.append(str(page))
            browser.get(page.as_uri())
            if screenshot is not None and page == index.resolve():
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(screenshot))
            for entry in browser.get_log("browser"):
                if entry["level"] == "SEVERE":
                    result.problems.append(f"{page.name}: console error: {entry['message']}")
            for src, complete, width in browser.execute_script(
                    "return [...document.images].map(i => [i.src, i.complete, i.naturalWidth]);"):
                result.images += 1
                if not complete or width <= 0:
                    result.problems.append(f"{page}: image not decoded: {src}")
            for src, status, duration in browser.execute_async_script(_AUDIO_JS):
                result.audio += 1
                if status != "ok" or not duration or duration <= 0:
                    result.problems.append(f"{page}: audio not decodable ({status}): {src}")
            for href in browser.execute_script("return [...document.links].map(a => a.href);"):
                url, _ = urldefrag(href)
                parsed = urlparse(url)
                if parsed.scheme != "file":
                    result.problems.append(f"{page}: link leaves the site: {href}")
                    continue
                target = Path(unquote(parsed.path))
                if not target.exists():
                    result.problems.append(f"{page}: broken link: {href}")
                elif target.suffix == ".html":
                    todo.append(target.resolve())
    finally:
        browser.quit()
    return result
