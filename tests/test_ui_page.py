"""The /ui page without a browser: what it weighs, that it loads nothing from elsewhere, its headers, both languages
complete, the PTBR_UI_ENABLED switch as service.py wires it, and that the bento packs the page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from serving.ui_app import CONTENT_SECURITY_POLICY, UI_DIR, create_ui_app

MAX_PAGE_BYTES = 300 * 1024


class _Resources(HTMLParser):
    """Every URL the page loads (scripts, styles, icons, media) and every link it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        elif tag == "link" and values.get("href"):
            self.loaded.append(values["href"])
        elif values.get("src"):
            self.loaded.append(values["src"])


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_ui_app(enabled=True))


def parse_page(client: TestClient) -> _Resources:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parser = _Resources()
    parser.feed(page.text)
    return parser


def test_the_page_weighs_under_300_kb_and_loads_nothing_from_elsewhere(client):
    resources = parse_page(client)
    local = [url for url in resources.loaded if not url.startswith("data:")]
    assert sorted(local) == ["app.js", "style.css"], resources.loaded
    total = len(client.get("/").content)
    for url in local:
        response = client.get(f"/{url}")
        assert response.status_code == 200, url
        total += len(response.content)
        assert not re.search(r"https?://|(?<![:\w])//[a-z0-9.-]+\.[a-z]{2,}/", response.text, re.I), \
            f"{url} refers to another site"
    for link in resources.links:
        assert not link.startswith(("http:", "https:", "//")), link
    print(json.dumps({"ui_page_bytes": total, "limit_bytes": MAX_PAGE_BYTES}))
    assert total < MAX_PAGE_BYTES
    # Everything in the folder is what the page is: no stray files ride along in the bento and the image.
    assert sorted(path.name for path in UI_DIR.iterdir()) == ["app.js", "index.html", "style.css"]


def test_page_headers_forbid_other_origins_and_revalidate(client):
    response = client.get("/")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    again = client.get("/app.js", headers={"if-none-match": client.get("/app.js").headers["etag"]})
    assert again.status_code == 304
    assert client.get("/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/nothing-here.js").status_code == 404


def test_no_inline_script_or_style_so_the_policy_holds():
    page = (UI_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "inline script would be blocked by the CSP"
    assert "<style" not in page and " style=" not in page and "onclick=" not in page


def _string_keys(source: str, language: str) -> set[str]:
    block = re.search(rf"^    {language}: \{{\n(.*?)^    \}},", source, re.S | re.M)
    assert block, f"no {language} strings in app.js"
    return set(re.findall(r"^      (\w+):", block.group(1), re.M))


def test_both_languages_have_every_string():
    source = (UI_DIR / "app.js").read_text()
    portuguese, english = _string_keys(source, "pt"), _string_keys(source, "en")
    assert portuguese == english, {"only pt": portuguese - english, "only en": english - portuguese}
    page_keys = set(re.findall(r'data-i18n="(\w+)"', (UI_DIR / "index.html").read_text()))
    assert page_keys and page_keys <= portuguese, page_keys - portuguese
    used = set(re.findall(r"\bt\('(\w+)'", source))
    assert used <= portuguese, used - portuguese
    # Every status the service answers has a sentence in both languages.
    assert {f"status{code}" for code in (400, 404, 409, 413, 429, 500, 503, 507)} <= portuguese


def test_switched_off_the_page_answers_the_json_404():
    client = TestClient(create_ui_app(enabled=False))
    for path in ("/", "/index.html", "/app.js"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"].startswith("ui: ") and "PTBR_UI_ENABLED" in response.json()["error"]


@pytest.mark.parametrize("value,expected", [(None, 200), ("false", 404)])
def test_service_mounts_the_page_by_the_setting(repo_root: Path, value, expected):
    """service.py as BentoML loads it: the app mounted at /ui follows PTBR_UI_ENABLED."""
    probe = (
        "import os, sys\n"
        "from starlette.testclient import TestClient\n"
        "import service\n"
        "[app] = [app for app, path, _ in service.PtBrTTS.mount_apps if path == '/ui']\n"
        "print(TestClient(app).get('/').status_code)\n"
    )
    env = {key: val for key, val in __import__("os").environ.items() if key != "PTBR_UI_ENABLED"}
    if value is not None:
        env["PTBR_UI_ENABLED"] = value
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(expected)


def test_the_setting_reads_ptbr_ui_enabled(monkeypatch):
    from ptbr_model.settings import Settings

    assert Settings().ui_enabled is True
    monkeypatch.setenv("PTBR_UI_ENABLED", "false")
    assert Settings().ui_enabled is False


def test_the_bento_packs_the_page(repo_root: Path):
    """bentofile.yaml's include, matched by BentoML's own build rules, takes every file of the page."""
    from bentoml._internal.bento.build_config import BentoPathSpec

    config = yaml.safe_load((repo_root / "bentofile.yaml").read_text())
    spec = BentoPathSpec(config["include"], config.get("exclude", []), str(repo_root))
    files = [path.relative_to(repo_root).as_posix() for path in UI_DIR.iterdir()] + ["serving/ui_app.py"]
    assert all(spec.includes(path) for path in files), [path for path in files if not spec.includes(path)]
