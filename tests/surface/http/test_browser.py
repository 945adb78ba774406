"""The dashboard in a real headless browser: Debian's chromium driven by Playwright.

No browser download is possible here, so the test uses the system chromium and installs it
with apt when it is missing (CI runs as root with apt). Screenshots go to
bench/out/screenshots/ (gitignored); the path is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import async_playwright

from fencepost import custom, message
from fencepost.surface.http import create_app
from tests.helpers.sandbox import apt_install

from .conftest import LONG_WRITER, WRITE, asgi_client, long_transcript, serve, takeover_run
from .test_api import JOB

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "bench" / "out" / "screenshots"
TOKEN = "browser-token"


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium, installed with apt-get on first use when it is missing."""
    return apt_install("chromium", _find_chromium)


@pytest.mark.slow
async def test_the_dashboard_runs_a_job_and_follows_a_session_live(gw, chromium_path, capsys):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    app = create_app(gw, token=TOKEN)
    async with serve(app) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            request = context.request
            r = await request.post(
                f"{url}/api/jobs",
                data=JOB,
                headers={"authorization": f"Bearer {TOKEN}"},
            )
            assert r.status == 201, await r.text()
            job_id = (await r.json())["job_id"]

            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # the token once in the URL: a cookie from then on, and the token leaves the URL
            await page.goto(f"{url}/?token={TOKEN}")
            assert page.url == f"{url}/"
            row = page.locator(f'tr[data-job-id="{job_id}"]')
            await row.wait_for()
            assert "disk report" in await row.inner_text()
            assert "never run" in await row.inner_text()
            await page.screenshot(path=SCREENSHOTS / "jobs.png", full_page=True)

            await row.get_by_role("button", name="run now").click()
            await page.locator("#flash").get_by_text("started run").wait_for()
            await row.locator(".last-status .status.ok").wait_for(timeout=15000)  # live refresh
            await page.screenshot(path=SCREENSHOTS / "jobs-after-run.png", full_page=True)

            await page.get_by_role("link", name="Runs").click()
            run_row = page.locator("#runs tbody tr").first
            await run_row.locator(".status.ok").wait_for()
            text = await run_row.inner_text()
            assert "disk report" in text and "scripted/replies" in text and "manual" in text
            await page.screenshot(path=SCREENSHOTS / "runs.png", full_page=True)

            await run_row.locator("a[href^='/sessions/']").click()
            await page.locator("#records tbody tr").first.wait_for()
            session_id = page.url.rsplit("/", 1)[1]
            writers = await page.locator("#records .writer").all_inner_texts()
            assert "attempt" in writers and "model-snapshot" in writers
            assert await page.locator("#records tr.record.active").count() >= 2
            await page.locator("#live-status.on").wait_for()  # the tail is connected

            await page.evaluate("window.__noReload = true")
            await gw.store.session(session_id).append(
                custom("delivery-mirror", {"text": "mirrored to the team channel"}),
                writer="delivery",
                run_id="delivery-run-1",
            )
            fresh = page.locator("#records tr.record", has_text="mirrored to the team channel")
            await fresh.wait_for(timeout=10000)
            assert await fresh.locator(".writer").inner_text() == "delivery"
            assert "delivery-run-1" in await fresh.inner_text()
            assert await page.evaluate("window.__noReload") is True  # appended, not reloaded
            await page.screenshot(path=SCREENSHOTS / "session.png", full_page=True)

            await page.get_by_role("link", name="Sessions").click()
            await page.locator(f'tr[data-session-id="{session_id}"]').wait_for()
            await page.screenshot(path=SCREENSHOTS / "sessions.png", full_page=True)
            assert errors == []
            await context.close()
        finally:
            await browser.close()
    with capsys.disabled():
        print(f"\nscreenshots: {SCREENSHOTS}")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@contextlib.asynccontextmanager
async def browser_page(gw, chromium_path: str, **context: Any) -> AsyncIterator[tuple[Any, str]]:
    """A chromium page at 1280 px on a served app, failing on any script error."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with serve(create_app(gw)) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, **context)
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, url
            assert errors == []
            await ctx.close()
        finally:
            await browser.close()


async def screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    """A screenshot, checked: as wide as the viewport (a full page wider than the viewport is
    a page that overflows sideways)."""
    path = SCREENSHOTS / name
    await page.screenshot(path=path, full_page=full_page)
    width, height = png_size(path)
    assert width == 1280, f"{path} is {width} px wide: the page overflows 1280 px"
    assert height >= 200, path
    return path


#: Where every visible record row's writer, run and time cells are, against the viewport.
LAYOUT = """() => {
  const w = window.innerWidth, bad = [];
  const rows = [...document.querySelectorAll('#records tr.record')].filter(r => !r.hidden);
  for (const tr of rows) {
    for (const sel of ['.writer-cell', '.run-cell', '.epoch-cell', '.time-cell']) {
      const r = tr.querySelector(sel).getBoundingClientRect();
      if (r.left < 0 || r.right > w || r.width < 30) bad.push([tr.dataset.index, sel, r.right]);
    }
  }
  return {scroll: document.documentElement.scrollWidth, inner: w, rows: rows.length, bad: bad};
}"""


async def assert_fits(page: Any, rows: int) -> None:
    layout = await page.evaluate(LAYOUT)
    assert layout["scroll"] <= layout["inner"] == 1280, layout
    assert layout["rows"] == rows and layout["bad"] == [], layout


# Invariant HTTP-I11
@pytest.mark.slow
async def test_a_500_record_transcript_with_a_side_branch_fits_1280_px_and_pages(gw, chromium_path):
    await long_transcript(gw, "long", n=500, branch_at=400, branch_len=6)
    async with browser_page(gw, chromium_path) as (page, url):
        await page.goto(f"{url}/sessions/long")
        await page.locator("#live-status.on").wait_for()
        shown = page.locator(".page-range").first
        assert await shown.inner_text() == "records 300\N{EN DASH}499 of 500"
        await assert_fits(page, 194)  # 200 records, the branch's 6 folded
        marker = page.locator("tr.branch-marker")
        assert await marker.count() == 1
        assert "6 records" in await marker.inner_text() and "#399" in await marker.inner_text()
        assert await page.locator(f'tr.record:has-text("{LONG_WRITER}")').count() > 0
        await screenshot(page, "session-500-records.png")

        await marker.get_by_role("link").click()  # unfolds in place (no navigation)
        await page.locator('tr.record.side[data-index="405"]').wait_for()
        assert await marker.get_by_role("link").get_attribute("aria-expanded") == "true"
        await assert_fits(page, 200)
        await screenshot(page, "session-branch-open.png")
        await page.locator('tr.record[data-index="396"]').scroll_into_view_if_needed()
        await screenshot(page, "session-branch-open-viewport.png", full_page=False)

        await page.locator('a[data-page="prev"]').first.click()
        await page.wait_for_url("**/sessions/long?offset=100#transcript")
        await page.locator('tr.record[data-index="100"]').wait_for()
        await assert_fits(page, 200)
        await page.locator('a[data-page="first"]').first.click()
        await page.wait_for_url("**?offset=0#transcript")
        assert await shown.inner_text() == "records 0\N{EN DASH}199 of 500"
        await assert_fits(page, 200)
        await screenshot(page, "session-first-page.png")
        await page.locator('a[data-page="end"]').first.click()
        await page.wait_for_url("**/sessions/long#transcript")  # the newest page, whatever it is
        await page.locator('tr.record[data-index="499"]').wait_for()

        # a new record on the path is appended live; one that forks re-reads the thread
        session = gw.store.session("long")
        await session.append(message("user", "a live one on the path"), writer="operator")
        await page.locator('tr.record.active[data-index="500"]').wait_for()
        await session.append(
            {**message("user", "a fork from record 498"), "parentId": f"{498:08x}"},
            writer="operator",
        )
        # the path now ends 498 → 501; 499 and 500 became a side branch
        await page.locator('tr.branch-marker:has-text("forks from #498")').wait_for()
        assert await page.locator('tr.record.active[data-index="501"]').count() == 1
        assert await page.locator('tr.record.side[data-index="500"]').get_attribute("hidden") == ""


# Invariant HTTP-I14
@pytest.mark.slow
async def test_jobs_are_created_refused_edited_disabled_and_deleted_from_the_dashboard(
    gw, chromium_path
):
    async with browser_page(gw, chromium_path) as (page, url):

        async def accept(dialog: Any) -> None:
            await dialog.accept()

        page.on("dialog", accept)
        await page.goto(f"{url}/")
        await page.get_by_role("button", name="new job").click()
        form = page.locator("#job-form")
        await form.wait_for()
        # the only check the script makes: the form's required fields
        assert await page.evaluate("document.getElementById('job-form').checkValidity()") is False
        await form.get_by_label("name").fill("nightly digest")
        await form.get_by_label("agent").fill("ops")
        await form.get_by_label("schedule").select_option("cron")
        await form.get_by_label("when").fill("0 7 * *")  # four fields: the API refuses it
        await form.get_by_label("time zone").fill("Europe/Berlin")
        await form.get_by_label("prompt").fill("summarise the night")
        await form.get_by_role("button", name="create").click()
        error = form.locator('.field[data-fields~="schedule.expr"] .field-error')
        await error.wait_for()
        assert "0 7 * *" in await error.inner_text()
        assert await form.get_by_label("when").get_attribute("aria-invalid") == "true"
        assert gw.cron.list_jobs() == []
        await screenshot(page, "jobs-form-refused.png")

        await form.get_by_label("when").fill("0 7 * * *")
        await form.get_by_role("button", name="create").click()
        await page.locator("#flash").get_by_text("created nightly digest").wait_for()
        row = page.locator("#jobs tr", has_text="nightly digest")
        await row.wait_for()
        [(job, _)] = gw.cron.list_jobs()
        assert job.schedule.expr == "0 7 * * *" and job.schedule.tz == "Europe/Berlin"
        assert job.enabled and job.agent == "ops"

        await row.get_by_role("button", name="edit").click()
        assert await form.get_by_label("name").input_value() == "nightly digest"
        assert await form.get_by_label("when").input_value() == "0 7 * * *"
        await form.get_by_label("agent").fill("nobody")
        await form.get_by_role("button", name="save").click()
        agent_error = form.locator('.field[data-fields~="agent"] .field-error')
        await agent_error.wait_for()
        assert "nobody" in await agent_error.inner_text()
        await form.get_by_label("agent").fill("ops")
        await form.get_by_label("name").fill("weekday digest")
        await form.get_by_label("when").fill("30 6 * * 1-5")
        await form.get_by_role("button", name="save").click()
        await page.locator("#flash").get_by_text("saved weekday digest").wait_for()
        row = page.locator(f'tr[data-job-id="{job.job_id}"]')
        await row.get_by_text("weekday digest").wait_for()
        edited = gw.cron.get_job(job.job_id)
        assert edited.schedule.expr == "30 6 * * 1-5" and edited.schedule.tz == "Europe/Berlin"
        await screenshot(page, "jobs-edited.png")

        await row.get_by_role("button", name="disable").click()
        await page.locator(f'tr[data-job-id="{job.job_id}"][data-enabled="false"]').wait_for()
        assert gw.cron.get_job(job.job_id).enabled is False
        await row.get_by_role("button", name="enable").click()
        await page.locator(f'tr[data-job-id="{job.job_id}"][data-enabled="true"]').wait_for()
        assert gw.cron.get_job(job.job_id).enabled is True

        await row.get_by_role("button", name="delete").click()
        await page.locator("#flash").get_by_text("deleted weekday digest").wait_for()
        await row.wait_for(state="detached")
        assert gw.cron.list_jobs() == []


# Invariant HTTP-I12, HTTP-I13
@pytest.mark.slow
async def test_run_filters_survive_a_reload_and_times_show_local_time_beside_utc(gw, chromium_path):
    async with asgi_client(create_app(gw)) as api:
        job = (await api.post("/api/jobs", json=JOB)).json()
        for _ in range(2):
            r = await api.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers=WRITE)
            assert r.status_code == 200, r.text
    gw.cron.insert_run(takeover_run(job["job_id"], 3.0))
    async with browser_page(gw, chromium_path, timezone_id="Asia/Kolkata") as (page, url):
        await page.goto(f"{url}/runs")
        await page.locator("#runs tr.run-takeover").wait_for()
        filters = page.locator("#run-filters")
        await filters.get_by_label("status").select_option("ok")  # submits on change
        await page.wait_for_url("**/runs?status=ok")
        await filters.get_by_label("since").fill("1h")
        await filters.get_by_label("job").select_option(job["job_id"])
        await page.wait_for_url(f"**/runs?job={job['job_id']}&status=ok&since=1h")
        await page.reload()
        assert await filters.get_by_label("status").input_value() == "ok"
        assert await filters.get_by_label("since").input_value() == "1h"
        assert await filters.get_by_label("job").input_value() == job["job_id"]
        assert await page.locator("#runs tbody tr").count() == 2
        assert await page.locator("#runs tr.run-takeover").count() == 0

        # Invariant HTTP-I13: the UTC time, and the reader's local time beside it
        first = page.locator("#runs tbody tr").first
        utc = await first.locator("time").get_attribute("datetime")
        local = await first.locator("time + .local").inner_text()
        when = datetime.fromisoformat(utc.replace("Z", "+00:00"))
        expected = when.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
        assert local.startswith(expected) and "5:30" in local, (utc, local)
        await screenshot(page, "runs-filtered.png")

        await filters.get_by_label("since").fill("last tuesday")
        await filters.get_by_role("button", name="filter").click()
        await page.locator("#filter-since-error").wait_for()
        assert await filters.get_by_label("status").input_value() == "ok"
        await screenshot(page, "runs-refused-filter.png")


# Invariant APPROVAL-I7
@pytest.mark.slow
async def test_the_dashboard_panel_approves_and_denies_as_the_dashboard(gw, chromium_path):
    """The approvals panel on every page: a waiting request is approved with a reason from the
    jobs page, one that arrives while a session page is open appears live and is denied; both
    are recorded in the transcript as decided by the dashboard, through the JSON API."""
    import asyncio

    from fencepost import read_transcript
    from fencepost.runtime.agent import ApprovalRequest
    from fencepost.runtime.gateway import APPROVAL_DECISION

    listed = asyncio.Event()
    gw.subscribe(lambda e: listed.set() if e["type"] == "approval_requested" else None)

    async def ask(summary: str, run_id: str) -> asyncio.Future[Any]:
        listed.clear()
        task = asyncio.ensure_future(
            gw.approvals.request(
                "ops-main", run_id, "ops", ApprovalRequest("exec", summary), wait_s=300
            )
        )
        await asyncio.wait_for(listed.wait(), 5)
        return task

    first = await ask("git log -1", "run-a")
    async with browser_page(gw, chromium_path) as (page, url):
        await page.goto(f"{url}/")
        item = page.locator("#approvals li.approval", has_text="git log -1")
        await item.wait_for()
        await item.get_by_label("reason for", exact=False).fill("read-only, fine")
        await item.get_by_role("button", name="approve").click()
        await page.locator("#flash").get_by_text("approved").wait_for()
        await page.locator("#approvals").wait_for(state="hidden")
        got = await first
        assert got.approved and got.by == "dashboard" and got.reason == "read-only, fine"

        await page.goto(f"{url}/sessions/ops-main")  # a page with its own live tail
        await page.locator("#live-status.on").wait_for()
        second = await ask("rm -rf \u202e/tmp/x", "run-b")
        item = page.locator("#approvals li.approval")
        await item.wait_for()  # drawn by the script from /api/approvals
        assert await item.locator(".approval-summary").inner_text() == "rm -rf \\u202e/tmp/x"
        await screenshot(page, "approvals-panel.png")
        await item.get_by_role("button", name="deny").click()
        await page.locator("#flash").get_by_text("denied").wait_for()
        got = await second
        assert not got.approved and got.by == "dashboard"

    entries = read_transcript(gw.store.session("ops-main").path).entries
    decided = [r.data["data"] for r in entries if r.data.get("customType") == APPROVAL_DECISION]
    assert [(d["by"], d["decision"]) for d in decided] == [
        ("dashboard", "approve"),
        ("dashboard", "deny"),
    ]
    assert decided[0]["reason"] == "read-only, fine"
