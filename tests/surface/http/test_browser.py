"""The dashboard in a real headless browser: Debian's chromium driven by Playwright.

No browser download is possible here, so the test uses the system chromium and installs it
with apt when it is missing (CI runs as root with apt). Screenshots go to
bench/out/screenshots/ (gitignored); the path is printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from fencepost import custom
from fencepost.surface.http import create_app

from .conftest import serve
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
    found = _find_chromium()
    if found is None:
        if shutil.which("apt-get") is None:
            pytest.fail("no chromium on this machine and no apt-get to install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            check=True,
            env=env,
            capture_output=True,
        )
        found = _find_chromium()
    assert found, "apt-get installed chromium, yet no chromium executable was found"
    return found


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
