"""docs/reference/http-api.md's curl examples, run as written against a real gateway.

The gateway runs the config ``fencepost init`` writes (what a reader has), served by uvicorn on
a loopback port. Each ``curl`` command of the page's first ``sh`` block is read with shlex and
sent with curl's semantics (``-d`` means POST with a form content type unless ``-H`` says
otherwise), so an example that would be refused for a user (a missing header, an agent that does
not exist) fails here. A flag the reader does not know fails the test rather than being ignored.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from fencepost.runtime.config import STARTER_CONFIG, StatePaths, load_config
from fencepost.runtime.gateway import Gateway
from fencepost.surface.http import create_app

from .conftest import serve
from .test_sse import sse_events

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "http-api.md"
TOKEN = "example-token"
#: The hosts the page uses, and which served app answers for each.
HOSTS = {"localhost:8787": "open", "gw.example:8787": "token"}


@dataclass
class Curl:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    stream: bool = False


def curl_commands(page: str) -> list[Curl]:
    """The curl commands of the page's first ``sh`` block, as requests."""
    block = re.search(r"```sh\n(.*?)```", page, re.S)
    assert block, "no sh block on the page"
    words = shlex.split(block.group(1).replace("\\\n", " "), comments=True)
    commands: list[list[str]] = []
    for w in words:
        if w == "curl":
            commands.append([])
        else:
            commands[-1].append(w)
    out = []
    for args in commands:
        cmd = Curl(url="")
        it = iter(args)
        for a in it:
            if a in ("-s", "-sN", "-N"):
                cmd.stream = cmd.stream or "N" in a
            elif a == "-X":
                cmd.method = next(it)
            elif a == "-H":
                name, _, value = next(it).partition(":")
                cmd.headers[name.strip().lower()] = value.strip()
            elif a == "-d":
                cmd.body = next(it)
                cmd.method = "POST" if cmd.method == "GET" else cmd.method
                cmd.headers.setdefault("content-type", "application/x-www-form-urlencoded")
            elif a.startswith("-"):
                raise AssertionError(f"the example uses {a}, which this test does not read")
            else:
                cmd.url = a if "://" in a else f"http://{a}"
        assert cmd.url, args
        out.append(cmd)
    return out


@pytest.fixture
async def starter_gw(tmp_path):
    """A gateway on the config ``fencepost init`` writes, in its file (so reload can re-read it)."""
    paths = StatePaths(tmp_path / "home")
    paths.root.mkdir(parents=True)
    paths.config.write_text(STARTER_CONFIG)
    g = Gateway(paths, load_config(paths.config), load_entry_points=False)
    await g.start()
    try:
        yield g
    finally:
        await g.stop(grace_s=2)


async def test_the_http_reference_examples_work_as_written_on_an_init_config(starter_gw):
    commands = curl_commands(PAGE.read_text())
    assert len(commands) >= 7
    answered: list[tuple[str, int]] = []
    job_id = ""
    async with (
        serve(create_app(starter_gw)) as open_url,
        serve(create_app(starter_gw, token=TOKEN)) as token_url,
        httpx2.AsyncClient(timeout=30) as client,
    ):
        served = {"open": open_url, "token": token_url}
        for cmd in commands:
            parts = urlsplit(cmd.url)
            assert parts.netloc in HOSTS, cmd.url
            url = served[HOSTS[parts.netloc]] + cmd.url.split(parts.netloc, 1)[1]
            url = url.replace("<job_id>", job_id)
            headers = {k: v.replace("$FENCEPOST_TOKEN", TOKEN) for k, v in cmd.headers.items()}
            if cmd.stream:
                async with client.stream(cmd.method, url, headers=headers) as r:
                    assert r.status_code == 200, (cmd, await r.aread())
                    assert r.headers["content-type"].startswith("text/event-stream")
                    events = sse_events(r)
                    backlog = [await anext(events) for _ in range(2)]  # snapshot, message
                    await events.aclose()
                    assert "Is db-2 still filling up?" in str(backlog), backlog
                answered.append((cmd.url, r.status_code))
                continue
            r = await client.request(cmd.method, url, headers=headers, content=cmd.body)
            assert 200 <= r.status_code < 300, (cmd, r.status_code, r.text)
            answered.append((cmd.url, r.status_code))
            body = r.json()
            if cmd.method == "POST" and url.endswith("/api/jobs"):
                assert body["agent"] == "ops"
                job_id = body["job_id"]
            elif url.endswith("/run?wait=true"):
                assert body["status"] == "ok", body
            elif "/messages" in url:
                assert r.status_code == 202 and body["session_id"] == "ops-main"
            elif url.endswith("/api/mcp"):
                assert body == {"servers": []}  # the init config declares none
            elif HOSTS[parts.netloc] == "token":
                assert [j["job_id"] for j in body["jobs"]] == [job_id]
        assert job_id, "no example created a job"
    assert [status for _, status in answered] == [200, 201, 200, 200, 202, 200, 200, 200, 200, 200]


async def test_the_examples_fail_here_when_a_user_would_see_them_fail(starter_gw):
    """The reader is strict: the same job example for an agent the init config lacks (the bug
    of issue 15) is refused, and without its content type curl's form default is refused."""
    job = next(c for c in curl_commands(PAGE.read_text()) if c.url.endswith("/api/jobs") and c.body)
    async with serve(create_app(starter_gw)) as url, httpx2.AsyncClient() as client:
        wrong_agent = (job.body or "").replace('"agent": "ops"', '"agent": "default"')
        r = await client.post(f"{url}/api/jobs", headers=job.headers, content=wrong_agent)
        assert r.status_code == 422 and r.json()["error"]["field"] == "agent"
        form = {"content-type": "application/x-www-form-urlencoded"}
        r = await client.post(f"{url}/api/jobs", headers=form, content=job.body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site"
