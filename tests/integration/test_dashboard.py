"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real server and
broker: simulated devices over TLS, one real agent device with the real model. Each page is checked
for live data and photographed to tests/artifacts/dashboard/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from linecrew.agent.assistant import Assistant, AssistantConfig
from linecrew.agent.daemon import telemetry_payload
from linecrew.agent.knowledge import SAMPLE_KB, KnowledgeBase
from linecrew.agent.store import SERVER_PEER, AgentStore
from linecrew.agent.sync import DeviceSync, open_device
from linecrew.server.app import Server
from linecrew.server.broker import free_port
from linecrew.server.config import ServerConfig
from linecrew.server.planner.dispatch import Job, Technician
from linecrew.server.planner.live import LivePlanner
from linecrew.shared.llm import LlmConfig, LocalLLM
from linecrew.shared.mqtt import wait_for
from linecrew.shared.protocol import new_id
from linecrew.tools.rehearsal import Authority, start_pilot_fleet
from tests.conftest import REPO, enroll_device
from tests.helpers.browser import chromium

SHOTS = REPO / "tests" / "artifacts" / "dashboard"
SIM_DEVICES = 6
XSS = '<img src=x onerror="document.body.dataset.pwned=1"> is the breaker safe?'


@dataclass
class Env:
    srv: Server
    url: str
    tokens: dict[str, str]
    agent: AgentStore
    authority: Authority


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("dashboard")
    authority = Authority(tmp / "authority")
    cfg = ServerConfig(data_dir=tmp / "server", http_port=free_port(), mqtt_port=free_port(),
                       mqtts_port=free_port(), release_root=authority.folder / "root.json", workers=0)
    srv = Server(cfg)
    srv.start()
    url = f"http://127.0.0.1:{cfg.http_port}"
    tokens = {name: srv.store.tokens.create(name, [role]) for name, role in
              (("ada", "admin"), ("rita", "release-manager"), ("sam", "release-manager"), ("paul", "planner"),
               ("eve", "expert"))}
    fleet, ids = start_pilot_fleet(srv.store, url, tmp, authority, count=SIM_DEVICES)
    # one real device (another class: the rollout is for rpi5 and x86-dev) with the real model
    store, address = open_device(enroll_device(srv, tmp / "truck", "truck-17", "jetson-orin-nano"))
    sync = DeviceSync(store, address)
    sync.start()
    llm = LocalLLM(LlmConfig(max_tokens=48))
    try:
        kb = KnowledgeBase(store.db)
        kb.ensure_indexed(SAMPLE_KB)
        assistant = Assistant(store, llm, kb,  # the model writes too; a loaded machine is slow, this is not about time
                              config=AssistantConfig(answer_mode="checked", answer_budget_ms=600_000))
        assistant.ask("How do I check the oil level on a pole-mounted transformer?")
        assistant.ask("A live wire is down next to the transformer and my partner got a shock")
        store.outbox.put("escalation", {"escalation_id": new_id(), "question": XSS, "reason": "test",
                                        "intent": "procedure_question", "context": []}, peer=SERVER_PEER,
                         stream="escalations", priority=9)
        store.outbox.put("telemetry", telemetry_payload(store), peer=SERVER_PEER, stream="telemetry")
        sync.notify()
        planner = LivePlanner(srv.store)
        planner.add_technician(Technician("ana", frozenset({"lv", "hv"}), (10, 10), (420, 930), "truck-17"))
        planner.add_technician(Technician("ben", frozenset({"lv"}), (40, 10), (420, 930), ids[0].device_id))
        for j in (Job("JOB-4711", (14, 22), 60, (480, 720), frozenset({"hv"}), 3, "Transformer T12 oil check"),
                  Job("JOB-4712", (35, 18), 45, (480, 900), frozenset(), 4, "Meter swap, 5 Elm St"),
                  Job("OUT-7", (20, 30), 90, (540, 660), frozenset(), 1, "Feeder 7 outage"),
                  Job("SUB-2", (30, 30), 120, (480, 600), frozenset({"relay"}), 2, "Relay test, substation 2")):
            planner.add_job(j)
        assert wait_for(lambda: len(srv.store.escalations.list()) == 2 and store.outbox.depth() == 0, 30)
        assert fleet.wait_connected(30)
        assert wait_for(lambda: sum(1 for d in srv.store.fleet() if d["version"] == 1) == SIM_DEVICES, 30)
        yield Env(srv, url, tokens, store, authority)
    finally:
        llm.close()
        fleet.stop()
        sync.stop()
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium(SHOTS)


def _page(browser: Any, env: Env, who: str, view: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors
    page.goto(f"{env.url}/dashboard/?poll=500#token={env.tokens[who]}")
    page.wait_for_selector(f"#who:has-text('{who}')")
    page.goto(f"{env.url}/dashboard/?poll=500#{view}")
    page.wait_for_selector(f"main[data-view='{view}']")
    return page


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_login_token_leaves_the_address_bar_and_bad_tokens_are_refused(browser: Any, env: Env) -> None:
    page = browser.new_page()
    page.goto(f"{env.url}/dashboard/#token={env.tokens['ada']}")
    page.wait_for_selector("#who:has-text('ada (admin)')")
    assert "token" not in page.url
    page.click("#logout")
    page.fill("#token", "not-a-token")
    page.click("#login-form button")
    page.wait_for_selector("#login-error:not(:empty)")
    assert not page.is_hidden("#login")
    headers = httpx.get(f"{env.url}/dashboard/").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    page.close()


def test_fleet_page_lists_live_devices(browser: Any, env: Env) -> None:
    from playwright.sync_api import expect

    page = _page(browser, env, "ada", "fleet")
    # a locator assertion polls from Playwright's side: a string predicate (wait_for_function) is evaluated in the
    # page, which the dashboard's Content-Security-Policy (no 'unsafe-eval') refuses once it has to poll
    expect(page.locator("[data-testid=fleet-table] tbody tr")).to_have_count(SIM_DEVICES + 1, timeout=60_000)
    assert page.inner_text("[data-testid=card-online] .v") == str(SIM_DEVICES + 1)
    rows = page.locator("[data-testid=fleet-table] tbody tr")
    sim = page.locator(f"tr[data-device='{env.srv.store.fleet()[1]['id']}']")
    assert "online" in sim.inner_text() and sim.locator("[data-testid=version]").inner_text() == "1"
    assert "jetson-orin-nano" in page.locator("tr[data-device='truck-17']").inner_text()
    assert rows.count() == SIM_DEVICES + 1
    _shot(page, "fleet")
    assert not page.errors, page.errors
    page.close()


def test_rollout_is_created_started_and_watched_to_completion(browser: Any, env: Env) -> None:
    viewer = _page(browser, env, "paul", "rollouts")  # a planner sees rollouts, acts on none
    assert viewer.locator("#new-rollout").count() == 0
    page = _page(browser, env, "rita", "rollouts")
    page.wait_for_selector("#ro-release option", state="attached")
    page.fill("#ro-waves", "34,100")
    page.fill("#ro-soak", "1")
    page.fill("#ro-reason", "pilot of the block-3 fine-tune")
    page.click("#ro-create")
    page.wait_for_selector("[data-testid=rollout-state]:has-text('waiting_for_approval')")
    reviewer = _page(browser, env, "sam", "rollouts")  # two-person rule: a second release manager approves
    reviewer.wait_for_selector("[data-testid=rollout-state]:has-text('waiting_for_approval')")
    reviewer.click("button[data-action=approve]")
    reviewer.wait_for_selector("[data-testid=rollout-state]:has-text('ready')")
    reviewer.close()
    page.wait_for_selector("[data-testid=rollout-state]:has-text('ready')")
    page.click("button[data-action=start]")
    page.wait_for_selector("[data-testid=rollout-state]:has-text('running')")
    _shot(page, "rollout-running")
    viewer.reload()
    viewer.wait_for_selector("[data-testid=rollout-state]")
    assert all(viewer.locator(f"button[data-action={a}]").is_disabled()
               for a in ("approve", "start", "pause", "resume", "abort", "rollback"))
    page.wait_for_selector("[data-testid=rollout-state]:has-text('finished')", timeout=120_000)
    labels = [page.text_content(f"[data-testid=wave-{i}-label]") for i in (1, 2)]
    assert all(re.match(r"(\d+)/\1 healthy · succeeded", x) for x in labels), labels
    assert page.inner_text("[data-testid=ro-healthy] .v") == str(SIM_DEVICES)
    assert page.locator("[data-testid=wave-chart] rect[data-state=healthy]").count() == 2
    _shot(page, "rollout-finished")
    assert sum(1 for d in env.srv.store.fleet() if d["version"] == 2) == SIM_DEVICES
    st = env.srv.store.rollouts.all()[0]
    assert st["bytes_sent"] == SIM_DEVICES * env.authority.deltas[("A", "B")].stat().st_size
    assert not page.errors and not viewer.errors, page.errors + viewer.errors
    page.close()
    viewer.close()


def test_planner_replans_from_the_timeline_and_the_route_reaches_the_device(browser: Any, env: Env) -> None:
    page = _page(browser, env, "paul", "planner")
    page.wait_for_selector("#plan-meta:has-text('no plan yet')")
    page.click("#replan")
    page.wait_for_selector("#plan-meta[data-version]:not([data-version=''])")
    version = int(page.get_attribute("#plan-meta", "data-version"))
    page.wait_for_selector("[data-testid=timeline] rect[data-job='JOB-4711']")
    assert page.locator("[data-testid=timeline] rect[data-job]").count() == 3
    assert "SUB-2" in page.inner_text("[data-testid=unassigned]")
    # the cheapest change that would place it, and why each technician got their job
    assert "a technician with skills relay" in page.inner_text("tr[data-job='SUB-2'] td.fix")
    assert "hv" in page.inner_html("[data-testid=timeline] rect[data-job='JOB-4711']")
    _shot(page, "planner")

    def arrived() -> bool:
        a = env.agent.get("assignment")
        return isinstance(a, dict) and a.get("plan_version") == version

    assert wait_for(arrived, 30)
    audit = httpx.get(f"{env.url}/v1/audit", headers={"Authorization": f"Bearer {env.tokens['ada']}"}).json()
    assert any(a["action"] == "plan.replan" and a["actor"] == "paul" for a in audit)
    assert not page.errors, page.errors
    page.close()


def test_expert_answers_an_escalation_and_it_arrives_on_the_device(browser: Any, env: Env) -> None:
    page = _page(browser, env, "eve", "escalations")
    page.wait_for_selector(".esc .q:has-text('partner got a shock')")
    assert page.locator(".esc .q", has_text="<img src=x").count() == 1, "device text is shown as text"
    assert page.evaluate("document.body.dataset.pwned") is None
    _shot(page, "escalations-open")
    card = page.locator(".esc", has_text="partner got a shock")
    card.locator("textarea").fill("Ambulance and line crew dispatched; feeder 7 is being opened. Keep clear.")
    card.locator("button").click()
    page.wait_for_selector("#esc-done td:has-text('Ambulance and line crew')")
    assert wait_for(lambda: any("Ambulance and line crew" in str(a["text"]) for a in env.agent.answers()), 30)
    answer = next(a for a in env.agent.answers() if "Ambulance" in str(a["text"]))
    assert answer["source"] == "eve"
    _shot(page, "escalations-answered")
    admin = _page(browser, env, "ada", "escalations")  # admin reads the queue, only experts answer
    admin.wait_for_selector(".esc")
    assert admin.locator(".esc button").first.is_disabled()
    assert not page.errors and not admin.errors, page.errors + admin.errors
    admin.close()
    page.close()


def test_metrics_page_charts_the_fleet_and_prometheus_scrapes_it(browser: Any, env: Env) -> None:
    page = _page(browser, env, "ada", "metrics")
    page.wait_for_selector("[data-testid=latency-chart] rect")
    assert int(page.inner_text("[data-testid=m-requests] .v")) == 2
    assert page.locator("[data-testid=outbox-chart] text").count() > 0
    model = env.agent.db.query("SELECT model_version FROM requests WHERE model_version IS NOT NULL")[0]
    assert model["model_version"] in page.inner_text("[data-testid=model-table]")
    page.wait_for_selector("[data-testid=backlog-chart] polyline", state="attached")
    _shot(page, "metrics")
    text = httpx.get(f"{env.url}/metrics").text
    assert f'linecrew_request_latency_seconds_count{{model="{model["model_version"]}"}} 1.0' in text
    for name in ("linecrew_request_latency_quantile_seconds", "linecrew_request_tokens_bucket",
                 "linecrew_model_throughput_tokens_per_second", "linecrew_model_error_rate",
                 "linecrew_manual_intervention_rate", "linecrew_deferred_backlog_oldest_seconds",
                 "linecrew_device_outbox_depth{device=\"truck-17\"}", "linecrew_cost_per_resolved_task",
                 "linecrew_http_request_duration_seconds_bucket"):
        assert name in text, name
    assert not page.errors, page.errors
    page.close()
