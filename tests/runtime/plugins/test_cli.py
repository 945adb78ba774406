"""``fencepost memory search`` and ``fencepost trajectory export`` on real state directories."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from fencepost import SessionStore, message
from fencepost.runtime.config import StatePaths
from fencepost.surface.cli import cli

from .conftest import memory_of


def run(*args, env=None):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)
    assert result.exit_code == 0, result.output
    return result


async def test_memory_search_prints_ranked_hits_and_json_restricted_to_an_agent(
    start_gateway, tmp_path
):
    gw = await start_gateway()
    assert (await gw.turn("ops-1", "ops", prompt="the albatross glides")).ok
    assert (await gw.turn("dev-1", "dev", prompt="albatross unit tests")).ok
    await memory_of(gw).wait_idle()
    await gw.stop()
    home = str(tmp_path)
    hits = json.loads(run("memory", "search", "albatross", "--home", home, "--json").output)
    assert sorted(h["session_id"] for h in hits) == ["dev-1", "ops-1"]
    assert {"score", "snippet", "agent", "role", "entry_id", "writer"} <= set(hits[0])
    only = run("memory", "search", "albatross", "--agent", "dev", "--json", "--home", home)
    assert [h["session_id"] for h in json.loads(only.output)] == ["dev-1"]
    one = run("memory", "search", "albatross", "--limit", "1", "--json", "--home", home)
    assert len(json.loads(one.output)) == 1
    table = run("memory", "search", "albatross", "--home", home)
    assert "ops-1" in table.output and "dev-1" in table.output
    by_env = run("memory", "search", "glides", "--json", env={"FENCEPOST_HOME": home})
    assert [h["session_id"] for h in json.loads(by_env.output)] == ["ops-1"]


async def test_memory_search_reindex_builds_the_index_without_a_gateway(tmp_path):
    paths = StatePaths(tmp_path)
    store = SessionStore(paths.sessions)
    try:
        await store.session("s").append(message("user", "cormorant dives"), writer="operator")
    finally:
        store.close()
    paths.workspace("ops").mkdir(parents=True)
    (paths.workspace("ops") / "n.md").write_text("# Seabirds\ncormorant notes\n")
    out = run("memory", "search", "cormorant", "--reindex", "--json", "--home", str(tmp_path))
    hits = json.loads(out.output)
    assert sorted(h["kind"] for h in hits) == ["note", "session"]
    assert {h["agent"] for h in hits} == {"", "ops"}


def test_memory_search_without_an_index_says_how_to_build_one(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fencepost", "memory", "search", "x", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "no memory index at" in proc.stderr and "--reindex" in proc.stderr
    assert not (tmp_path / "memory.db").exists()  # a read-only search creates nothing


async def test_trajectory_export_prints_jsonl_or_json_and_filters_by_run(start_gateway, tmp_path):
    gw = await start_gateway()
    assert (await gw.turn("s", "ops", prompt="a", run_id="r1")).ok
    assert (await gw.turn("s", "ops", prompt="b", run_id="r2")).ok
    await gw.stop()
    home = str(tmp_path)
    lines = run("trajectory", "export", "s", "--home", home).output.splitlines()
    assert json.loads(lines[0])["run_id"] == "r1"
    assert {json.loads(x)["run_id"] for x in lines} == {"r1", "r2"}
    as_json = json.loads(
        run("trajectory", "export", "s", "--format", "json", "--home", home).output
    )
    assert len(as_json) == len(lines)
    r2 = run("trajectory", "export", "s", "--run", "r2", "--format", "json", "--home", home)
    events = json.loads(r2.output)
    assert {e["run_id"] for e in events} == {"r2"}
    assert events[0]["event"] == "turn_started"
    assert events[-1]["event"] == "turn_finished" and events[-1]["status"] == "ok"


def test_trajectory_export_of_an_unknown_session_is_a_clear_error(tmp_path):
    args = ["trajectory", "export", "nope", "--home", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "fencepost", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "no trajectory for session 'nope'" in proc.stderr
