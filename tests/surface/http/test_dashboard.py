"""The server-rendered dashboard pages (their live parts run in test_browser.py)."""

from __future__ import annotations

import re

import pytest

from fencepost import OutsideProtocolChangeError, custom, message

from .conftest import WRITE, long_transcript, takeover_run
from .test_api import JOB


async def test_the_jobs_page_lists_jobs_with_next_run_last_status_and_run_now(client):
    job = (await client.post("/api/jobs", json=JOB)).json()
    await client.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers=WRITE)
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "disk report" in html and "every 1h" in html
    assert f'data-run-job="{job["job_id"]}"' in html
    assert '<span class="status ok">ok</span>' in html
    assert 'data-live="feed"' in html


async def test_the_runs_page_shows_status_duration_model_errors_and_takeover_reasons(client, gw):
    job = (await client.post("/api/jobs", json=JOB)).json()
    await client.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers=WRITE)
    fence = {
        "reason": "foreign_append",
        "description": "41 bytes past the committed end, written by no protocol writer",
        "epoch_held": 3,
        "epoch_seen": 3,
    }
    gw.cron.insert_run(
        takeover_run(
            job["job_id"],
            21.5,
            error_message="session 'x' taken over",
            model="scripted/slow",
            fence=fence,
        )
    )
    html = (await client.get("/runs")).text
    assert '<span class="status ok">ok</span>' in html and "scripted/replies" in html
    assert '<span class="status takeover">takeover</span>' in html
    assert "21.5 s" in html and "scripted/slow" in html
    assert "written by no protocol writer" in html and "epoch 3" in html
    filtered = (await client.get("/runs?status=takeover")).text
    assert "r-takeov" in filtered and "scripted/replies" not in filtered


async def test_the_session_page_shows_the_thread_who_wrote_each_record_and_fence_events(client, gw):
    session = gw.store.session("notes")
    root = await session.append(message("user", "root question"), writer="operator")
    await session.append(message("assistant", "first answer"), writer="plugin:notes")
    # a branch from the root: a sibling of the first answer
    await session.append(
        {**message("assistant", "second answer"), "parentId": root.entry_ids[0]},
        writer="delivery",
        run_id="run-99",
    )
    with open(session.path, "ab") as f:
        f.write(b'{"type":"custom","customType":"outside","data":1}\n')
    with pytest.raises(OutsideProtocolChangeError):
        await session.append(custom("late", 1), writer="delivery")
    html = (await client.get("/sessions/notes")).text
    assert "root question" in html and "second answer" in html
    for writer in ("operator", "plugin:notes", "delivery"):
        assert f">{writer}</span>" in html
    assert "run-99" in html
    assert html.count('class="record active"') == 2  # root → second answer, the newest leaf
    # Invariant HTTP-I11: the first answer left the path; it is a folded side branch
    assert 'class="branch-marker"' in html and "side branch · 1 record</a>" in html
    assert "forks from #0" in html and 'class="record side"' in html
    assert "padding-left" not in html and "data-depth" not in html
    assert "foreign_append" in html  # the fence event
    assert 'data-live="session"' in html and 'data-next-index="4"' in html


async def test_the_sessions_page_lists_sessions_with_their_last_writer(client, gw):
    await gw.store.session("notes").append(message("user", "x"), writer="operator")
    html = (await client.get("/sessions")).text
    assert 'href="/sessions/notes"' in html and ">operator</span>" in html


async def test_an_unknown_or_path_like_session_page_is_an_html_error(client):
    r = await client.get("/sessions/nope")
    assert r.status_code == 404 and "session_not_found" in r.text
    r = await client.get("/sessions/a..b")
    assert r.status_code == 400 and "invalid_session_id" in r.text
    r = await client.get("/sessions/..%2Fetc")
    assert r.status_code == 400


async def test_the_static_files_are_served(client):
    css = await client.get("/static/dashboard.css")
    js = await client.get("/static/dashboard.js")
    assert css.status_code == 200 and "tr.record.active" in css.text
    assert js.status_code == 200 and "EventSource" in js.text


def _shown(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="record[^"]*" data-index="(\d+)"', html)]


# Invariant HTTP-I11
async def test_a_long_transcript_is_paged_200_records_at_a_time_newest_page_first(client, gw):
    await long_transcript(gw, "long", n=500, branch_at=400, branch_len=6)
    html = (await client.get("/sessions/long")).text
    assert _shown(html) == list(range(300, 500))  # the newest page, a full one
    assert "records 300\N{EN DASH}499 of 500" in html
    assert 'href="?offset=0#transcript" data-page="first"' in html
    assert 'href="?offset=100#transcript" data-page="prev"' in html
    assert 'data-page="next"' not in html and 'data-live="session"' in html
    assert "side branch · 6 records</a>" in html and "forks from #399" in html

    first = (await client.get("/sessions/long?offset=0")).text
    assert _shown(first) == list(range(200))
    assert 'href="?offset=200#transcript" data-page="next"' in first
    assert 'href="/sessions/long#transcript" data-page="end"' in first
    assert 'data-page="prev"' not in first and 'data-live=""' in first  # no tail off the end

    middle = (await client.get("/sessions/long?offset=200")).text
    assert _shown(middle) == list(range(200, 400)) and 'class="branch-marker"' not in middle
    beyond = (await client.get("/sessions/long?offset=450")).text
    assert _shown(beyond) == list(range(300, 500))  # a page past the end: the newest one
    assert (await client.get("/sessions/long?offset=-1")).status_code == 422


# Invariant HTTP-I11
async def test_a_folded_branch_opens_without_the_script_by_its_link(client, gw):
    await long_transcript(gw, "long", n=50, branch_at=20, branch_len=3)
    html = (await client.get("/sessions/long")).text
    assert html.count('<tr class="record side"') == 3 and html.count(" hidden>") == 3
    link = re.search(r'<a class="branch-toggle" href="([^"]+)"', html)
    assert link and "open=00000014" in link.group(1).replace("&amp;", "&")
    opened = (await client.get("/sessions/long?offset=0&open=00000014")).text
    assert " hidden>" not in opened and 'aria-expanded="true"' in opened


# Invariant HTTP-I13
async def test_times_are_utc_text_in_time_elements_the_script_adds_local_time_to(client, gw):
    await gw.store.session("t").append(
        {**message("user", "x"), "timestamp": "2026-03-29T07:00:00.250+02:00"}, writer="operator"
    )
    html = (await client.get("/sessions/t")).text
    assert '<time datetime="2026-03-29T05:00:00Z">2026-03-29 05:00:00Z</time>' in html
    js = (await client.get("/static/dashboard.js")).text
    assert "time[datetime]" in js and "getHours" in js


# Invariant HTTP-I12
async def test_run_filters_come_from_the_address_and_stay_in_the_form_and_the_pager(client, gw):
    job = (await client.post("/api/jobs", json=JOB)).json()
    for _ in range(3):
        await client.post(f"/api/jobs/{job['job_id']}/run?wait=true", headers=WRITE)
    gw.cron.insert_run(takeover_run(job["job_id"], 2.0))
    html = (await client.get(f"/runs?job={job['job_id']}&status=ok&since=1h&limit=2")).text
    assert f'<option value="{job["job_id"]}" selected>' in html
    assert '<option value="ok" selected>ok</option>' in html
    assert 'name="since" value="1h"' in html
    assert html.count('<tr data-run-id="') == 2 and "r-takeover" not in html
    pager = re.search(r'<a class="pager" href="([^"]+)"', html)
    assert pager
    assert pager.group(1).replace("&amp;", "&").endswith(f"&job={job['job_id']}&status=ok&since=1h")
    failures = (await client.get("/runs?status=error,timeout,takeover,interrupted")).text
    assert "r-takeov" in failures and '<span class="status ok">' not in failures


# Invariant HTTP-I12
async def test_a_refused_run_filter_is_shown_next_to_its_field_with_the_apis_status(client):
    r = await client.get("/runs?since=last+tuesday&status=ok")
    assert r.status_code == 422
    assert 'id="filter-since-error"' in r.text and "last tuesday" in r.text
    assert 'name="since" value="last tuesday" ' in r.text  # kept, to be corrected
    assert '<option value="ok" selected>' in r.text
    api = await client.get("/api/runs?since=last+tuesday")
    assert api.status_code == 422 and api.json()["error"]["field"] == "since"
    r = await client.get("/runs?job=ffff")
    assert r.status_code == 404 and 'id="filter-job-error"' in r.text


async def test_every_page_shows_the_approvals_waiting_with_hidden_characters_shown(client, gw):
    """The approvals panel (docs/design/approvals.md): hidden when nothing waits; each request
    with its tool, summary, session and buttons; controls and bidi marks escaped, markup
    escaped, so a request reads as it is."""
    import asyncio

    from fencepost.runtime.agent import ApprovalRequest

    assert (
        '<section id="approvals" class="approvals" hidden aria-labelledby='
        in (await client.get("/")).text
    )
    sneaky = ApprovalRequest("exec", "ls \u202e<b>fr- mr</b>\nrm -rf ~")
    listed = asyncio.Event()
    gw.subscribe(lambda e: listed.set() if e["type"] == "approval_requested" else None)
    task = asyncio.ensure_future(
        gw.approvals.request("ops-main", "run-1", "ops", sneaky, wait_s=300)
    )
    await asyncio.wait_for(listed.wait(), 5)
    (p,) = gw.approvals.pending()
    for url in ("/", "/runs", "/sessions", "/sessions/ops-main"):
        html = (await client.get(url)).text
        panel = html.split('<section id="approvals"', 1)[1].split("</section>", 1)[0]
        assert "hidden" not in panel.split(">", 1)[0], url
        assert (
            f'data-approve="{p.approval_id}"' in panel and f'data-deny="{p.approval_id}"' in panel
        )
        assert "ls \\u202e&lt;b&gt;fr- mr&lt;/b&gt;\\u000arm -rf ~" in panel, panel
        assert 'href="/sessions/ops-main"' in panel
    await gw.approvals.withdraw_run("run-1")
    await task
