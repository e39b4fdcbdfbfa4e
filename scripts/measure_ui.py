#!/usr/bin/env python3
"""Measure the /ui page of a running service in headless Chromium and print JSON: what it weighs, and how long it
takes to load (Navigation Timing, cache disabled, median of --runs) and to show the model's status (the page's first
API answer, /model_info).

    .venv/bin/python scripts/measure_ui.py --url http://127.0.0.1:3000 [--runs 7]

Needs Debian's chromium and chromium-driver (scripts/setup.sh installs them). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import chromium, missing  # noqa: E402

TARGET_LOAD_MS = 1000
TARGET_BYTES = 300 * 1024


class _Loaded(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("href") if tag == "link" else values.get("src")
        if url and not url.startswith("data:"):
            self.urls.append(url)


def page_bytes(url: str) -> dict[str, int]:
    """Bytes of the page and of everything it loads, as served (no compression is configured)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        index = client.get("/ui/")
        index.raise_for_status()
        parser = _Loaded()
        parser.feed(index.text)
        sizes = {"index.html": len(index.content)}
        for resource in parser.urls:
            response = client.get(f"/ui/{resource}")
            response.raise_for_status()
            sizes[resource] = len(response.content)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("--url must be a loopback address")
    reason = missing()
    if reason:
        parser.error(reason)

    sizes = page_bytes(args.url)
    loads, ready, first_paint = [], [], []
    with chromium("pt-BR") as driver:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        for _ in range(args.runs):
            driver.get(f"{args.url}/ui/")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                timing = driver.execute_script("""
                    const nav = performance.getEntriesByType('navigation')[0];
                    const info = performance.getEntriesByType('resource').find((r) => r.name.endsWith('/model_info'));
                    const paint = performance.getEntriesByName('first-contentful-paint')[0];
                    return {load: nav.loadEventEnd, info: info ? info.responseEnd : 0, paint: paint ? paint.startTime : 0};""")
                if timing["load"] and timing["info"]:
                    break
                time.sleep(0.02)
            loads.append(timing["load"])
            ready.append(timing["info"])
            first_paint.append(timing["paint"])
    load_ms = statistics.median(loads)
    print(json.dumps({
        "url": f"{args.url}/ui/",
        "runs": args.runs,
        "bytes": sum(sizes.values()),
        "bytes_by_file": sizes,
        "bytes_target": TARGET_BYTES,
        "load_ms_median": round(load_ms, 1),
        "load_ms_max": round(max(loads), 1),
        "first_contentful_paint_ms_median": round(statistics.median(first_paint), 1),
        "model_status_answer_ms_median": round(statistics.median(ready), 1),
        "load_target_ms": TARGET_LOAD_MS,
        "within_targets": load_ms < TARGET_LOAD_MS and sum(sizes.values()) < TARGET_BYTES,
    }))


if __name__ == "__main__":
    main()
