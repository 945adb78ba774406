"""``fencepost service``: the systemd user unit, rendered, verified by systemd, installed and
removed (docs/design/cli.md CLI-I8)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fencepost.surface.cli.service import render_unit
from tests.helpers.cli import invoke

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
    )


@needs_systemd
def test_the_rendered_unit_passes_systemd_analyze_verify_cli_i8(tmp_path):
    """Invariant CLI-I8: systemd itself accepts the unit (and refuses a broken one here)."""
    home = tmp_path / "my home"
    unit = tmp_path / "fencepost.service"
    unit.write_text(render_unit(sys.executable, home, str(home / "fencepost.toml")))
    got = verify(unit)
    assert got.returncode == 0, got.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("ExecStart=/", "ExecStart="))
    assert verify(broken).returncode != 0


def test_the_unit_runs_this_gateway_on_this_home_reloads_with_sighup_and_restarts_cli_i8(
    tmp_path,
):
    text = render_unit("/opt/venv/bin/python", tmp_path / "state dir")
    assert (
        f"ExecStart=/opt/venv/bin/python -m fencepost gateway --home '{tmp_path}/state dir'" in text
    )
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    assert f"EnvironmentFile=-{tmp_path}/state dir/service.env" in text


def test_install_status_and_uninstall_write_and_remove_the_user_unit_cli_i8(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    home = tmp_path / "home"
    unit = tmp_path / "xdg" / "systemd" / "user" / "fencepost.service"
    got = invoke(["service", "install", "--no-start"], home, env)
    got.check("service install")
    assert got.code == 0 and unit.exists()
    assert f"--home {home}" in unit.read_text()
    assert "systemctl --user daemon-reload" in got.stdout
    status = invoke(["service", "status"], home, env)
    status.check("service status")
    assert f"installed at {unit}" in status.stdout
    printed = invoke(["service", "install", "--print"], home, env)
    assert printed.stdout == unit.read_text()
    gone = invoke(["service", "uninstall"], home, env)
    gone.check("service uninstall")
    assert not unit.exists() and "untouched" in gone.stdout
    assert "not installed" in invoke(["service", "status"], home, env).stdout
