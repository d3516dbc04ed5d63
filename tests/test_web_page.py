"""The web page (issue 15) in a real browser: Debian's chromium, driven by playwright,
against the app on a real loopback HTTP server, Redis, the worker code and the
Kubernetes stand-in. Screenshots go to test-output/web_page/ (kept, gitignored).

CSRF and roles are checked with plain HTTP posts carrying the session cookie, as a
cross-site page or a viewer's browser would send them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from rq import Queue

from tests.conftest import REPO, RESPONDER, post, run_jobs, serving, timeline
from tests.support.mitigation import MitigationBench, latency
from tests.test_responders import FLOW
from tests.test_runbook_kube import _app as runbook_app
from tests.test_runbook_kube import troubled
from workers.config import Settings

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-output" / "web_page"
WAIT_MS = 10_000
SESSION_SECRET = "web-page-test-secret-4f1c"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Token sign-in on (a session secret), and loopback as the trusted proxy."""
    return replace(
        settings, session_secret=SESSION_SECRET, trusted_proxies=(ip_network("127.0.0.1/32"),)
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-proxy-server"]
        )
        yield launched
        launched.close()


@pytest.fixture
def incident(mitigation: MitigationBench, queue: Queue) -> tuple[Flask, str]:
    """The app on a policy that pages, notifies and proposes a rollout restart, with one
    incident raised by a real notification, its jobs run (so the proposal waits)."""
    client = mitigation.app(FLOW)
    (incident_id,) = post(client, latency()).json["incidents"]
    run_jobs(queue)
    assert [e for e in timeline(client, incident_id) if e["kind"] == "proposed"]
    return client.application, incident_id


def test_a_responder_runs_an_incident_from_the_browser(
    browser: Browser, incident: tuple[Flask, str], mitigation: MitigationBench, queue: Queue
) -> None:
    app, incident_id = incident
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(app) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{url}/incidents")
        expect(page).to_have_url(re.compile(r"/login\?next=/incidents$"))
        page.fill("#token", "ap_test_rui")
        page.click("button:has-text('Sign in')")
        expect(page).to_have_url(f"{url}/incidents")
        row = page.locator(f'tr[data-incident="{incident_id}"]')
        expect(row).to_contain_text("SEV2")
        page.screenshot(path=SHOTS / "incidents.png", full_page=True)

        row.locator("a").click()
        expect(page).to_have_url(f"{url}/incidents/{incident_id}")
        page.fill("#text", "p99 up since the 14:02 deploy")
        page.click("button:has-text('Add note')")
        expect(page).to_have_url(f"{url}/incidents/{incident_id}?done=notes")
        page.select_option("#role", "ic")
        page.select_option("#assignee", "rui")
        page.click("button:has-text('Assign')")
        expect(page.locator('dd[data-role="ic"]')).to_have_text("rui")
        expect(page.locator("[data-proposal]")).to_contain_text("rollout restart")
        page.screenshot(path=SHOTS / "incident-proposal.png", full_page=True)
        page.locator("[data-proposal] button:has-text('Approve')").click()
        expect(page).to_have_url(f"{url}/incidents/{incident_id}?done=approve")
        expect(page.locator("[data-proposal]")).to_have_count(0)

        shown = _entries(page)
        assert ("note", "rui") in shown and ("assigned", "rui") in shown
        assert ("approved", "rui") in shown
        page.screenshot(path=SHOTS / "incident.png", full_page=True)
        _phone_screenshots(context.browser, context, url, incident_id)
        context.close()
    run_jobs(queue)
    assert mitigation.kube.calls == [("apps", "deployments", "patch")]  # the approved restart


def _entries(page: Page) -> list[tuple[str, str]]:
    items = page.locator("li[data-entry-kind]")
    return [
        (
            items.nth(n).get_attribute("data-entry-kind") or "",
            items.nth(n).get_attribute("data-entry-by") or "",
        )
        for n in range(items.count())
    ]


def _phone_screenshots(browser: Browser | None, desktop: Any, url: str, incident_id: str) -> None:
    """The same pages on a 390 px wide phone, signed in with the desktop's cookie."""
    assert browser is not None
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.add_cookies(desktop.cookies())
    page = phone.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/incidents")
    expect(page.locator(f'tr[data-incident="{incident_id}"]')).to_be_visible()
    page.screenshot(path=SHOTS / "incidents-phone.png", full_page=True)
    page.goto(f"{url}/incidents/{incident_id}")
    page.screenshot(path=SHOTS / "incident-phone.png", full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    phone.close()


def test_the_proxy_names_the_person_and_their_forms_work(
    browser: Browser, incident: tuple[Flask, str]
) -> None:
    app, incident_id = incident
    with serving(app) as url:
        context = browser.new_context(extra_http_headers={"X-Forwarded-Email": "rui@example.com"})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{url}/incidents/{incident_id}")
        expect(page.locator("header .who")).to_have_text("rui · responder")
        page.fill("#text", "from behind the proxy")
        page.click("button:has-text('Add note')")
        expect(page.locator('li[data-entry-kind="note"][data-entry-by="rui"]')).to_contain_text(
            "from behind the proxy"
        )
        context.close()


def test_a_cross_site_post_is_refused_and_changes_nothing(app: Flask, live_server: str) -> None:
    client = app.test_client()
    (incident_id,) = post(client, latency()).json["incidents"]
    before = timeline(client, incident_id)
    http, csrf = _signed_in(live_server, "ap_test_rui", incident_id)
    note = f"{live_server}/incidents/{incident_id}/notes"
    refused = [
        http.post(note, data={"text": "no token"}, allow_redirects=False, timeout=10),
        http.post(note, data={"text": "x", "csrf": "forged"}, allow_redirects=False, timeout=10),
        http.post(
            note,
            data={"text": "foreign", "csrf": csrf},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
            timeout=10,
        ),
        http.post(
            note,
            data={"text": "cross-site", "csrf": csrf},
            headers={"Sec-Fetch-Site": "cross-site"},
            allow_redirects=False,
            timeout=10,
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert timeline(client, incident_id) == before
    same_site = http.post(
        note,
        data={"text": "same site", "csrf": csrf},
        headers={"Origin": live_server, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
        timeout=10,
    )
    assert same_site.status_code == 303  # the token and a same-site origin: accepted


def test_a_viewer_sees_no_forms_and_may_not_post(app: Flask, live_server: str) -> None:
    client = app.test_client()
    (incident_id,) = post(client, latency()).json["incidents"]
    before = timeline(client, incident_id)
    http, csrf = _signed_in(live_server, "ap_test_vic", incident_id)
    page = http.get(f"{live_server}/incidents/{incident_id}", timeout=10).text
    actions = re.findall(r'<form[^>]*action="([^"]+)"', page)
    assert actions == ["/logout"]
    answer = http.post(
        f"{live_server}/incidents/{incident_id}/notes",
        data={"text": "a viewer's note", "csrf": csrf},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 403
    assert timeline(client, incident_id) == before


def test_a_session_cookie_holds_no_token_and_a_forged_one_signs_nobody_in(
    app: Flask, live_server: str
) -> None:
    client = app.test_client()
    (incident_id,) = post(client, latency()).json["incidents"]
    http, _ = _signed_in(live_server, "ap_test_rui", incident_id)
    cookie = http.cookies.get("alertpilot_session") or ""
    assert "ap_test_rui" not in cookie and SESSION_SECRET not in cookie
    sid, _name, expires, mac = cookie.split(".")
    forged = requests.Session()
    forged.trust_env = False
    forged.cookies.set("alertpilot_session", f"{sid}.YWRh.{expires}.{mac}")  # "ada"
    answer = forged.get(f"{live_server}/incidents", allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/login")


def test_the_page_shows_what_the_api_says(incident: tuple[Flask, str]) -> None:
    app, incident_id = incident
    client = app.test_client()
    for name, body in (("assign", {"role": "ic", "person": "rui"}), ("notes", {"text": "a <b>"})):
        path = f"/api/v1/incidents/{incident_id}/{name}"
        assert client.post(path, json=body, headers=RESPONDER).status_code == 200
    api = client.get(f"/api/v1/incidents/{incident_id}", headers=RESPONDER).json
    pending = client.get("/api/v1/actions", headers=RESPONDER).json["actions"]
    with serving(app) as url:
        http, _ = _signed_in(url, "ap_test_rui", incident_id)
        html = http.get(f"{url}/incidents/{incident_id}", timeout=10).text
    page = _Page()
    page.feed(html)
    assert page.entries == [(e["kind"], e["message"]) for e in api["timeline"]]
    assert page.roles == {role: ", ".join(names) for role, names in api["roles"].items()}
    assert page.proposals == [(p["id"], p["change"]) for p in pending]
    assert "a <b>" in [m for _, m in page.entries] and "a <b>" not in html  # escaped


class _Page(HTMLParser):
    """The timeline entries (kind, message), roles and proposals (id, change) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[str, str]] = []
        self.roles: dict[str, str] = {}
        self.proposals: list[tuple[str, str]] = []
        self._into: tuple[str, str] | None = None
        self._kind = self._proposal = ""
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if "data-entry-kind" in found:
            self._kind = found["data-entry-kind"] or ""
        elif "data-proposal" in found:
            self._proposal = found["data-proposal"] or ""
        elif "data-role" in found:
            self._into, self._text = ("role", found["data-role"] or ""), ""
        elif "entry-message" in classes:
            self._into, self._text = ("entry", self._kind), ""
        elif "proposal-change" in classes:
            self._into, self._text = ("proposal", self._proposal), ""

    def handle_data(self, data: str) -> None:
        if self._into is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._into is None or tag not in ("div", "dd", "code"):
            return
        what, key = self._into
        if what == "entry":
            self.entries.append((key, self._text))
        elif what == "role":
            self.roles[key] = self._text
        else:
            self.proposals.append((key, self._text))
        self._into = None


def _signed_in(url: str, token: str, incident_id: str) -> tuple[requests.Session, str]:
    """A browser-like HTTP session signed in with `token` on /login, and the CSRF token
    of the incident's page."""
    http = requests.Session()
    http.trust_env = False  # loopback only, never a proxy of the environment
    login = http.get(f"{url}/login", timeout=10).text
    answer = http.post(
        f"{url}/login",
        data={"token": token, "csrf": _csrf(login)},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303, answer.text
    return http, _csrf(http.get(f"{url}/incidents/{incident_id}", timeout=10).text)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_web_page_shows_the_steps_now_and_at_declaration_and_runs_them(
    mitigation: MitigationBench,
) -> None:
    troubled(mitigation.kube)  # a crash-looping pod for workload_status to find
    app = runbook_app(mitigation)
    (incident_id,) = post(app, latency("web")).json["incidents"]
    run_jobs(mitigation.queue)
    with serving(app.application) as url:
        http, csrf = _signed_in(url, "ap_test_rui", incident_id)
        page = http.get(f"{url}/incidents/{incident_id}", timeout=10).text
        assert 'data-step="workload" data-step-ok="no"' in page
        assert "CrashLoopBackOff" in page
        asked = http.post(
            f"{url}/incidents/{incident_id}/runbook",
            data={"csrf": csrf},
            headers={"Origin": url, "Sec-Fetch-Site": "same-origin"},
            allow_redirects=False,
            timeout=10,
        )
        assert asked.status_code == 303, asked.text
        assert asked.headers["Location"].endswith(f"/incidents/{incident_id}?done=runbook")
        run_jobs(mitigation.queue)
        page = http.get(f"{url}/incidents/{incident_id}", timeout=10).text
    assert "At declared" in page  # a second run: the first run's column beside it
    assert [r["by"] for r in timeline(app, incident_id) if r["kind"] == "runbook_asked"] == ["rui"]


def test_the_pages_show_response_figures_from_the_first_alert(
    incident: tuple[Flask, str],
) -> None:
    app, incident_id = incident
    client = app.test_client()
    acked = client.post(f"/api/v1/incidents/{incident_id}/acknowledge", headers=RESPONDER)
    assert acked.status_code == 200
    figures = client.get("/api/v1/figures?since=1d", headers=RESPONDER).json
    sev2 = figures["severities"]["SEV2"]
    with serving(app) as url:
        http, _ = _signed_in(url, "ap_test_rui", incident_id)
        listed = http.get(f"{url}/incidents", timeout=10).text
        page = http.get(f"{url}/incidents/{incident_id}", timeout=10).text
    row = re.search(r'<tr data-figures-severity="SEV2">(.*?)</tr>', listed, re.S)
    assert row is not None, listed
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells[0] == str(sev2["incidents"]) == "1"
    assert cells[-1] == f"{sev2['share_within']:.0%} of 1"
    line = re.search(r'<p class="muted" data-figures>(.*?)</p>', page, re.S)
    assert line is not None and "acknowledged after" in line.group(1)


def test_the_postmortem_draft_has_a_page_the_resolved_message_links(
    incident: tuple[Flask, str],
) -> None:
    app, incident_id = incident
    draft = app.test_client().get(f"/api/v1/incidents/{incident_id}/postmortem", headers=RESPONDER)
    assert draft.status_code == 200 and draft.mimetype == "text/markdown"
    with serving(app) as url:
        http = requests.Session()
        http.trust_env = False
        bounced = http.get(
            f"{url}/incidents/{incident_id}/postmortem", allow_redirects=False, timeout=10
        )
        assert bounced.status_code == 303
        assert bounced.headers["Location"].endswith(
            f"/login?next=/incidents/{incident_id}/postmortem"
        )
        http, _ = _signed_in(url, "ap_test_rui", incident_id)
        page = http.get(f"{url}/incidents/{incident_id}/postmortem", timeout=10).text
        missing = http.get(f"{url}/incidents/nope-1/postmortem", timeout=10)
    shown = re.search(r"<pre class=\"card\" data-postmortem>(.*?)</pre>", page, re.S)
    assert shown is not None
    assert html.unescape(shown.group(1)) == draft.get_data(as_text=True)
    assert missing.status_code == 404
