"""Approvals end to end: a real gateway on a loopback port, the scripted model calling a tool
that asks (tests/helpers/asking.py), and the operator answering from a real `fencepost
approvals` process or over HTTP. Both decisions and who gave them are in the transcript
(docs/design/approvals.md, issue 16: "an ask approved from the CLI and one denied from the HTTP
API, both recorded")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from fencepost import read_transcript, verify_transcript
from fencepost.runtime.config import AgentConfig, GatewayConfig, StatePaths
from fencepost.runtime.gateway import APPROVAL_DECISION, APPROVAL_REQUEST, Gateway
from fencepost.surface.cli.approvals import decider
from fencepost.surface.http import create_app
from tests.helpers import procs
from tests.helpers.asking import SCRIPT, AskingPlugin

from .http.conftest import serve


def config() -> GatewayConfig:
    return GatewayConfig(
        agents={"ops": AgentConfig(name="ops", model="scripted/guarded", tools=("guarded",))},
        plugins=(),
        durability="buffered",
        scripts={"guarded": SCRIPT},
    )


@contextlib.asynccontextmanager
async def served_gateway(root) -> AsyncIterator[tuple[Gateway, str]]:
    """A started gateway with the asking plugin, its app on a loopback port, and the
    ``gateway.url`` file the CLI finds it by (as `fencepost gateway` writes it)."""
    gw = Gateway(StatePaths(root), config(), plugins=[AskingPlugin()], load_entry_points=False)
    await gw.start()
    try:
        async with serve(create_app(gw)) as url:
            (root / "gateway.url").write_text(url + "\n")
            yield gw, url
    finally:
        await gw.stop(grace_s=2)


async def fencepost(root, *args: str) -> tuple[int, str, str]:
    """`fencepost ARGS` as a real process on ``root``, without blocking the gateway's loop."""
    env = {**procs.env(), "FENCEPOST_HOME": str(root)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fencepost",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def requested(gw: Gateway) -> dict[str, Any]:
    """The next ``approval_requested`` event of the gateway's live feed."""
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "approval_requested" and not got.done():
            got.set_result(event)

    unsubscribe = gw.subscribe(on_event)
    try:
        return await asyncio.wait_for(got, 30)
    finally:
        unsubscribe()


def approval_records(gw: Gateway, session_id: str) -> list[tuple[str, dict, str]]:
    return [
        (r.data["customType"], r.data["data"], (r.stamp or {}).get("writer"))
        for r in read_transcript(gw.store.session(session_id).path).entries
        if r.data.get("customType") in (APPROVAL_REQUEST, APPROVAL_DECISION)
    ]


def tool_results(gw: Gateway, session_id: str) -> list[dict]:
    return [
        r.data["message"]
        for r in read_transcript(gw.store.session(session_id).path).entries
        if r.data.get("type") == "message" and r.data["message"].get("role") == "toolResult"
    ]


@pytest.mark.processes
async def test_an_ask_approved_from_the_cli_runs_and_both_records_say_who(tmp_path):
    """Invariants APPROVAL-I1, APPROVAL-I3, APPROVAL-I7, through real processes: the request is
    listed by `fencepost approvals list`, approved by `fencepost approvals approve` as
    cli:<user>, and only then does the tool act."""
    root = tmp_path / "home"
    async with served_gateway(root) as (gw, _url):
        waiting = asyncio.ensure_future(requested(gw))
        turn = asyncio.ensure_future(gw.turn("ops-main", "ops", prompt="make the marker"))
        event = await waiting
        approval_id = event["approval_id"]
        marker = gw.specs["ops"].workspace / "marker.txt"
        assert not marker.exists()  # nothing ran before the decision

        code, out, err = await fencepost(root, "approvals", "list", "--json")
        assert code == 0, err
        (listed,) = json.loads(out)
        assert listed["approval_id"] == approval_id and listed["summary"] == "touch marker.txt"
        assert listed["session_id"] == "ops-main" and listed["tool"] == "guarded"
        code, out, err = await fencepost(root, "approvals", "list")
        assert code == 0 and approval_id in out and "touch marker.txt" in out, out + err

        code, out, err = await fencepost(
            root, "approvals", "approve", approval_id, "--reason", "looks right"
        )
        assert code == 0, err
        assert f"approved {approval_id}" in out and decider() in out

        result = await asyncio.wait_for(turn, 30)
        assert result.ok and result.reply == "done", result
        assert marker.read_text() == "touched\n"
        (res,) = tool_results(gw, "ops-main")
        assert not res["isError"] and decider() in res["content"][0]["text"]
        (req, req_data, req_writer), (dec, dec_data, dec_writer) = approval_records(gw, "ops-main")
        assert (req, dec, req_writer, dec_writer) == (
            APPROVAL_REQUEST,
            APPROVAL_DECISION,
            "approval",
            "approval",
        )
        assert req_data["approval_id"] == dec_data["approval_id"] == approval_id
        assert req_data["run_id"] == dec_data["run_id"] == result.run_id
        assert dec_data["approved"] and dec_data["by"] == decider()
        assert dec_data["reason"] == "looks right"

        # A second decision from the CLI is refused, with who decided first.
        code, _, err = await fencepost(root, "approvals", "deny", approval_id)
        assert code == 1 and f"approved by {decider()}" in err and "Traceback" not in err
        code, _, err = await fencepost(root, "approvals", "approve", "ap-ffffffffffffffff")
        assert code == 3 and "no approval request" in err
        assert verify_transcript(gw.store.session("ops-main").path).ok


@pytest.mark.processes
async def test_an_ask_denied_over_http_is_a_denial_the_model_sees_and_the_tool_never_acts(
    tmp_path,
):
    """Invariants APPROVAL-I3, APPROVAL-I7: denied over the HTTP API, recorded by http."""
    async with served_gateway(tmp_path / "home") as (gw, url):
        waiting = asyncio.ensure_future(requested(gw))
        turn = asyncio.ensure_future(gw.turn("ops-main", "ops", prompt="make the marker"))
        approval_id = (await waiting)["approval_id"]
        async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
            listed = (await client.get("/api/approvals")).json()["approvals"]
            assert [a["approval_id"] for a in listed] == [approval_id]
            r = await client.post(
                f"/api/approvals/{approval_id}",
                json={"decision": "deny", "reason": "not in business hours"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["by"] == "http" and r.json()["decision"] == "deny"
        result = await asyncio.wait_for(turn, 30)
        assert result.ok and result.reply == "done"
        assert not (gw.specs["ops"].workspace / "marker.txt").exists()
        (res,) = tool_results(gw, "ops-main")
        assert res["isError"] and res.get("details", {}).get("denied") is True
        assert "denied by http: not in business hours" in res["content"][0]["text"]
        _, (_, dec, _) = approval_records(gw, "ops-main")
        assert (dec["approved"], dec["by"], dec["reason"]) == (
            False,
            "http",
            "not in business hours",
        )
        assert verify_transcript(gw.store.session("ops-main").path).ok


async def test_the_cli_says_clearly_when_no_gateway_runs(tmp_path):
    """Invariant CLI-I1: approvals live in a running gateway; without one, the CLI says so."""
    code, _, err = await fencepost(tmp_path, "approvals", "list")
    assert code == 1 and "no gateway runs on" in err and "fencepost gateway" in err
    assert "Traceback" not in err
    assert not os.path.exists(tmp_path / "sessions")


@pytest.mark.processes
async def test_exec_under_ask_approved_from_the_cli_and_denied_over_http_both_recorded(tmp_path):
    """Issue 16's exec case with the real ``exec`` tool (policy ask, nothing allowed outright):
    `touch` approved by a real `fencepost approvals approve` process runs; the same command
    denied over the HTTP API does not; both decisions, with who gave them, are records."""
    from fencepost.runtime.agent import ExecPolicy
    from fencepost.runtime.providers import ScriptedToolCall, ScriptStep

    call = ScriptedToolCall("exec", {"argv": ["touch", "marker.txt"]}, id="x1")
    cfg = GatewayConfig(
        agents={
            "ops": AgentConfig(
                name="ops",
                model="scripted/toucher",
                tools=("exec",),
                exec=ExecPolicy(policy="ask"),
            )
        },
        plugins=(),
        durability="buffered",
        scripts={"toucher": (ScriptStep(tool_calls=(call,)), ScriptStep(text="done"))},
    )
    root = tmp_path / "home"
    gw = Gateway(StatePaths(root), cfg, load_entry_points=False)
    await gw.start()
    try:
        async with serve(create_app(gw)) as url:
            (root / "gateway.url").write_text(url + "\n")
            marker = gw.specs["ops"].workspace / "marker.txt"
            for session, answer in (("by-cli", "approve"), ("by-http", "deny")):
                waiting = asyncio.ensure_future(requested(gw))
                turn = asyncio.ensure_future(gw.turn(session, "ops", prompt="touch it"))
                event = await waiting
                assert event["tool"] == "exec" and event["summary"] == "touch marker.txt"
                if answer == "approve":
                    code, _, err = await fencepost(
                        root, "approvals", "approve", event["approval_id"]
                    )
                    assert code == 0, err
                else:
                    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
                        r = await client.post(
                            f"/api/approvals/{event['approval_id']}", json={"decision": "deny"}
                        )
                        assert r.status_code == 200, r.text
                result = await asyncio.wait_for(turn, 30)
                assert result.ok, result
                (res,) = tool_results(gw, session)
                _, (_, dec, writer) = approval_records(gw, session)
                assert writer == "approval"
                if answer == "approve":
                    assert marker.exists() and not res["isError"]
                    assert "exit code: 0" in res["content"][0]["text"]
                    assert dec["approved"] and dec["by"] == decider()
                    marker.unlink()
                else:
                    assert not marker.exists() and res["isError"]
                    assert res.get("details", {}).get("denied") is True
                    assert not dec["approved"] and dec["by"] == "http"
                assert verify_transcript(gw.store.session(session).path).ok
    finally:
        await gw.stop(grace_s=2)
