"""The device screen in real headless Chromium: job, the walk-through with its current step, answers with their
citations, the live transcript, a read-back with big yes/no buttons, what waits to be sent, link and battery.
No request leaves the device; actions need the agent's token; screenshots land in tests/artifacts/screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from linecrew.agent.assistant import Assistant, JobContext
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.local_api import TOKEN_FILE, URL_FILE, DeviceService, LocalServer
from linecrew.agent.speech import Partial
from linecrew.agent.store import AgentStore
from linecrew.agent.voice import Turn
from tests.conftest import REPO
from tests.helpers.browser import chromium, have_chromium

SHOTS = REPO / "tests" / "artifacts" / "screen"
pytestmark = pytest.mark.skipif(not have_chromium(), reason="chromium missing: run `make test`")
XSS = '<img src=x onerror="document.body.dataset.pwned=1">'


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[tuple[LocalServer, Assistant]]:
    store = AgentStore(tmp_path / "dev", device_id="truck-9")
    kb = KnowledgeBase(store.db)
    kb.ensure_indexed(SAMPLE_KB)
    assistant = Assistant(store, None, kb)  # type: ignore[arg-type]
    assistant.set_job(JobContext("J-88", "Capacitor bank check", "Feeder 12, pole 4471"))
    server = LocalServer(DeviceService(assistant), port=0, folder=tmp_path / "dev")
    server.start()
    try:
        yield server, assistant
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium(SHOTS)


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 800, "height": 1280})  # a rugged tablet, portrait
    page.errors, page.outside = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)  # a 404, a CSP refusal
    page.on("request", lambda r: None if r.url.startswith(url) else page.outside.append(r.url))
    page.goto(url + "/")
    return page


def test_the_screen_walks_a_procedure_and_confirms_with_a_glove_sized_yes(browser: Any, screen: Any) -> None:
    server, _ = screen
    service = server.service
    service.ask("walk me through the capacitor bank work")
    service.ask("done")
    service.heard(Turn("next step please", (), 1.0, 100.0))
    service.heard(Partial(3, "what fuse for a", "", 200.0))
    page = _open(browser, server.url)
    page.wait_for_selector("#steps li.current")
    assert "J-88" in page.inner_text("[data-testid=job]") and "pole 4471" in page.inner_text("[data-testid=job]")
    current = page.locator("#steps li.current")
    assert current.get_attribute("data-step") == "2" and "5 minutes" in current.inner_text()
    assert page.locator("#steps li.done").count() == 1
    assert "capacitor-bank.md#before-work-on-a-capacitor-bank:step-2" in page.inner_text("[data-testid=answers]")
    assert "what fuse for a" in page.inner_text("[data-testid=transcript]")
    page.screenshot(path=str(SHOTS / "walkthrough.png"), full_page=True)

    page.fill("[data-testid=ask]", "we need two fuse cutouts")  # typed: the same conversation as spoken
    page.click("#ask-button")
    page.wait_for_selector("[data-testid=confirm]:not([hidden])")
    assert "2 x fuse cutouts" in page.inner_text("[data-testid=readback]")
    yes = page.locator("[data-testid=yes]").bounding_box()
    assert yes["height"] >= 88 and yes["width"] >= 160  # a gloved thumb
    page.screenshot(path=str(SHOTS / "confirm.png"), full_page=True)
    page.click("[data-testid=yes]")
    page.wait_for_selector("[data-testid=confirm][hidden]", state="attached")
    # selectors, not a JS predicate: the screen's CSP forbids eval, which a polled string predicate may need
    page.wait_for_selector("[data-testid=outbox]:has-text('parts request')")
    assert "offline" in page.inner_text("[data-testid=link]")
    assert not page.errors and not page.outside, (page.errors, page.outside)
    page.close()


def test_words_from_anyone_are_shown_as_text_never_run(browser: Any, screen: Any) -> None:
    server, _ = screen
    server.service.heard(Turn(XSS, (), 1.0, 100.0))
    server.service.ask(XSS)
    page = _open(browser, server.url)
    page.wait_for_selector("#transcript li")
    assert XSS in page.inner_text("[data-testid=transcript]")
    assert page.evaluate("document.body.dataset.pwned") is None
    page.close()


def test_actions_need_the_agents_token_and_small_bodies(screen: Any, tmp_path: Path) -> None:
    server, _ = screen
    assert (tmp_path / "dev" / URL_FILE).read_text() == server.url
    token = (tmp_path / "dev" / TOKEN_FILE).read_text()
    assert (tmp_path / "dev" / TOKEN_FILE).stat().st_mode & 0o077 == 0
    assert httpx.post(server.url + "/api/ask", json={"text": "hi"}).status_code == 403
    assert httpx.post(server.url + "/api/ask", json={"text": "hi"},
                      headers={"X-Linecrew-Token": "guess"}).status_code == 403
    big = httpx.post(server.url + "/api/note", content=b"x" * (70 * 1024),
                     headers={"X-Linecrew-Token": token, "Content-Type": "application/json"})
    assert big.status_code == 413
    bad = httpx.post(server.url + "/api/ask", content=b"{not json", headers={"X-Linecrew-Token": token})
    assert bad.status_code == 400
    ok = httpx.post(server.url + "/api/ask", json={"text": "what fuse link for a 50 kva pole pig?"},
                    headers={"X-Linecrew-Token": token})
    assert ok.status_code == 200 and "8T" in ok.json()["answer"]
    odd = httpx.post(server.url + "/api/ask", json={"text": "what be be", "alternatives": "what PPE"}, timeout=60,
                     headers={"X-Linecrew-Token": token})
    assert odd.status_code == 400 and "alternatives" in odd.json()["error"]
    heard = httpx.post(server.url + "/api/ask", json={"text": "what be be for swamping a meter",
                                                      "alternatives": ["what PPE for swapping a meter"]}, timeout=60,
                       headers={"X-Linecrew-Token": token})
    assert heard.status_code == 200 and heard.json()["heard_as"] == "what PPE for swapping a meter"
