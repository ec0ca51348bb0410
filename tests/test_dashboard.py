"""The operator dashboard at /dashboard in headless Chromium (Debian's, driven by playwright) against real
servers: the managed-models server for the charts, the model table and the playground, the secured one for
the API key. The page keeps what it shows in window.dashboard, which these tests read.

Screenshots go to a temporary folder (printed); set INFERNO_DASHBOARD_SCREENSHOT to a path to also save the
full page there (docs/dashboard.png was made so).
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from inferno.core.embedded import EMBEDDED_MODEL_ID
from tests.management_helpers import model_state, unloaded
from tests.security_fixtures import SecuredServer
from tests.servers import RunningServer

ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 60_000
# Long enough to span several of the page's one-second /metrics scrapes.
LONG_CHAT = {
    "model": EMBEDDED_MODEL_ID,
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 200,
    "ignore_eos": True,
}


@dataclass
class Dashboard:
    page: Page
    screenshots: Path
    console_errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def state(self, expression: str) -> object:
        return self.page.evaluate(f"() => window.dashboard.{expression}")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}")
    return folder


def _open(browser: Browser, url: str, screenshots: Path, **context: object) -> Dashboard:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, **context).new_page()  # type: ignore[arg-type]
    page.set_default_timeout(WAIT_MS)
    dashboard = Dashboard(page, screenshots)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            dashboard.console_errors.append(f"{message.text} at {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: dashboard.console_errors.append(f"uncaught: {error}"))
    page.goto(url + "/dashboard")
    return dashboard


@pytest.fixture(scope="module")
def dashboard(
    browser: Browser, managed_server: RunningServer, managed_http: httpx.Client, screenshots: Path
) -> Iterator[Dashboard]:
    unloaded(managed_http, "second")
    dashboard = _open(browser, managed_server.base_url, screenshots)
    dashboard.page.wait_for_function(
        "() => window.dashboard && window.dashboard.ready && window.dashboard.connection === 'live'"
    )
    yield dashboard
    dashboard.page.context.close()


def test_every_static_file_is_package_data() -> None:
    """A non-editable install serves the page: pyproject's package-data globs cover every file of static/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["inferno.adapters.dashboard"]
    package = ROOT / "adapters" / "dashboard"
    covered = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    assert {path for path in (package / "static").rglob("*") if path.is_file()} == covered


def test_the_page_loads_only_its_own_files(managed_http: httpx.Client) -> None:
    page = managed_http.get("/dashboard")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked and all(url.startswith("/dashboard/") or url == "data:," for url in linked)
    for url in (u for u in linked if u.startswith("/dashboard/")):
        assert managed_http.get(url).status_code == 200, url
    assert managed_http.get("/dashboard/js/main.js").headers["Content-Type"].startswith("text/javascript")
    for missing in ("/dashboard/nope.js", "/dashboard/../pyproject.toml", "/dashboard/static/index.html"):
        reply = managed_http.get(missing)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found", missing


def test_the_page_loads_with_live_data_and_no_console_errors(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.wait_for_function("() => window.dashboard.charts.throughput.snapshot().time.length >= 2")
    page.wait_for_function("() => window.dashboard.system !== null")
    row = page.locator(f'#models tr[data-model="{EMBEDDED_MODEL_ID}"]')
    assert row.locator(".badge").inner_text() == "loaded"
    assert page.locator("#models tr[data-model='second'] .badge").inner_text() == "unloaded"
    assert page.locator(f"#engines tbody tr:has-text('{EMBEDDED_MODEL_ID}')").count() == 1
    dashboard.screenshot("loaded")
    assert dashboard.console_errors == []


def test_the_throughput_chart_moves_while_a_chat_runs(
    dashboard: Dashboard, managed_http: httpx.Client
) -> None:
    page = dashboard.page
    start = int(page.evaluate("() => window.dashboard.charts.throughput.snapshot().time.length"))
    replies: list[httpx.Response] = []
    chat = threading.Thread(
        target=lambda: replies.append(managed_http.post("/v1/chat/completions", json=LONG_CHAT))
    )
    chat.start()
    try:
        page.wait_for_function(
            f"""() => {{
                const points = window.dashboard.charts.throughput.snapshot();
                return points.series["all models"].slice({start}).some((v) => v > 0)
                    && (points.series["{EMBEDDED_MODEL_ID}"] || []).slice({start}).some((v) => v > 0);
            }}"""
        )
    finally:
        chat.join(timeout=120)
    assert replies and replies[0].status_code == 200
    dashboard.screenshot("throughput")
    assert dashboard.console_errors == []


def _wait_for_cell(page: Page, model: str, cell: str, text: str) -> None:
    """Until the model table's cell (a class inside the model's row) shows text."""
    page.wait_for_function(
        """([model, cell, text]) => {
            const found = document.querySelector(`#models tr[data-model="${model}"] ${cell}`);
            return found !== null && found.textContent === text;
        }""",
        arg=[model, cell, text],
    )


def test_the_load_button_shows_progress_and_ends_loaded(
    dashboard: Dashboard, managed_http: httpx.Client
) -> None:
    page = dashboard.page
    unloaded(managed_http, "second")
    row = page.locator("#models tr[data-model='second']")
    _wait_for_cell(page, "second", ".badge", "unloaded")
    assert row.locator("progress").is_hidden()
    row.locator("button.load").click()
    _wait_for_cell(page, "second", ".progress-text", "loaded")
    _wait_for_cell(page, "second", ".badge", "loaded")
    assert (
        row.locator("progress").is_visible() and row.locator("progress").evaluate("bar => bar.value") == 100
    )
    history = dashboard.state("models.second.history")
    assert isinstance(history, list)
    # The load's first update (0%, "queued") always comes, however fast the load.
    assert any(step["status"] == "loading" and step["progress"] == 0 for step in history)
    assert history[-1]["status"] == "loaded"
    assert row.locator("button.unload").is_enabled() and row.locator("button.load").is_disabled()
    assert model_state(managed_http, "second") == "loaded"
    assert re.fullmatch(r"[0-9.]+[MG]B", row.locator(".memory").inner_text())
    dashboard.screenshot("model-loaded")
    assert dashboard.console_errors == []


def _send(page: Page, prompt: str) -> None:
    page.locator("#playground [name=prompt]").fill(prompt)
    page.locator("#playground button.send").click()
    page.wait_for_function(
        "() => window.dashboard.playground.running === false && window.dashboard.playground.finishReason"
    )


def test_the_playground_streams_a_reply_with_token_timing(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.locator("#playground [name=model]").select_option(EMBEDDED_MODEL_ID)
    page.locator("#playground [name=max_tokens]").fill("24")
    page.locator("#playground [name=logprobs]").check()
    _send(page, "Write a haiku about the sea.")
    chat = dashboard.state("playground")
    assert isinstance(chat, dict)
    assert chat["text"].strip() and chat["error"] is None
    assert chat["usage"]["completion_tokens"] <= 24 and chat["finishReason"] in ("stop", "length")
    assert len(chat["arrivals"]) > 1 and chat["ttftMs"] > 0
    reply = page.locator("#playground .message.assistant").last
    tokens = reply.locator(".token")
    assert tokens.count() >= len(chat["arrivals"]) and "".join(tokens.all_inner_texts()) == chat["text"]
    assert "%" in (tokens.first.get_attribute("title") or "")
    assert "TTFT" in reply.locator(".stats").inner_text()
    dashboard.screenshot("playground")
    assert dashboard.console_errors == []


def test_the_playground_shows_a_forced_tool_call(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.locator("#playground details summary").click()
    page.locator("#playground button.example-tools").click()
    page.locator("#playground [name=logprobs]").uncheck()
    page.locator("#playground button.clear").click()
    page.locator("#playground [name=model]").select_option(EMBEDDED_MODEL_ID)
    page.locator("#playground [name=max_tokens]").fill("200")
    page.locator("#playground [name=temperature]").fill("0")
    _send(page, "What is the weather in Paris?")
    chat = dashboard.state("playground")
    assert isinstance(chat, dict)
    assert chat["finishReason"] == "tool_calls"
    assert [call["name"] for call in chat["toolCalls"]] == ["get_weather"]
    assert chat["toolCalls"][0]["id"].startswith("call_")
    shown = page.locator("#playground .message.assistant").last.locator(".tool-call").inner_text()
    assert shown.startswith("get_weather(") and '"city"' in shown
    path = dashboard.screenshot("tool-call")
    if os.environ.get("INFERNO_DASHBOARD_SCREENSHOT"):
        Path(os.environ["INFERNO_DASHBOARD_SCREENSHOT"]).write_bytes(path.read_bytes())
    assert dashboard.console_errors == []


def test_a_secured_server_asks_for_a_key_and_shows_a_refusal(
    browser: Browser, secured: SecuredServer, screenshots: Path
) -> None:
    dashboard = _open(browser, secured.server.base_url, screenshots, ignore_https_errors=True)
    page = dashboard.page
    try:
        message = page.locator("#auth-message")
        message.wait_for(state="visible")
        assert "needs an API key" in message.inner_text()
        page.locator("#key-input").fill("sk-inf-not-a-real-key")
        page.locator("#key-form button[type=submit]").click()
        page.wait_for_function("() => window.dashboard && window.dashboard.auth.refused")
        assert "refused this API key" in message.inner_text()
        assert "authentication_failed" in message.inner_text()
        assert page.locator("#connection").inner_text() == "key refused"
        dashboard.screenshot("key-refused")

        page.locator("#key-input").fill(secured.admin_key)
        page.locator("#key-form button[type=submit]").click()
        page.wait_for_function(
            "() => window.dashboard && window.dashboard.ready && window.dashboard.connection === 'live'"
        )
        page.wait_for_function(
            "(id) => window.dashboard.models[id] && window.dashboard.models[id].status === 'loaded'",
            arg=EMBEDDED_MODEL_ID,
        )
        assert message.is_hidden()
        dashboard.screenshot("key-accepted")
    finally:
        page.context.close()
