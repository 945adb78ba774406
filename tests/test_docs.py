"""Drift-prone docs are generated or tested (STYLE rule 9): the CLI reference, the plugin hooks,
the HTTP error codes, the exports. Regenerate the CLI reference with
``python tests/test_docs.py``."""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
HOOKS_PAGE = ROOT / "docs" / "reference" / "plugins.md"
HTTP_PAGE = ROOT / "docs" / "reference" / "http-api.md"


def render_cli_reference() -> str:
    from fencepost.surface.cli import EXIT_CODES, cli

    def walk(cmd: click.Command, prefix: list[str]) -> list[tuple[str, click.Command]]:
        if isinstance(cmd, click.Group):
            return [
                x for name, sub in sorted(cmd.commands.items()) for x in walk(sub, [*prefix, name])
            ]
        return [(" ".join(prefix), cmd)]

    lines = [
        "# CLI reference",
        "",
        "Generated from the click commands (`tests/test_docs.py` fails when this page and the code",
        "disagree; `python tests/test_docs.py` rewrites it). Every command takes `-h/--help`.",
        "",
    ]
    for name, cmd in walk(cli, ["fencepost"]):
        lines += [
            f"## `{name}`",
            "",
            (cmd.help or "").strip().split("\n\n")[0].replace("\n", " "),
            "",
        ]
        args = [p for p in cmd.params if isinstance(p, click.Argument)]
        if args:
            lines += ["Arguments: " + ", ".join(f"`{(a.name or '').upper()}`" for a in args), ""]
        for o in cmd.params:
            if isinstance(o, click.Option):
                lines.append(f"- `{', '.join(o.opts)}`: {(o.help or '').strip()}")
        lines.append("")
    lines += ["## Exit codes", "", "| error | exit code |", "| --- | --- |"]
    lines += [f"| `{cls.__name__}` | {code} |" for cls, code in EXIT_CODES]
    lines += [
        "| any other failure (a failed check, a failed run) | 1 |",
        "| a run that ended in a takeover (`cron run`, `agent run`) | 4 |",
    ]
    return "\n".join(lines) + "\n"


def test_the_cli_reference_matches_the_commands():
    assert CLI_PAGE.read_text() == render_cli_reference(), (
        "docs/reference/cli.md is stale: run `python tests/test_docs.py`"
    )


def test_every_plugin_hook_is_documented_with_its_arguments():
    from fencepost.runtime.gateway import FencepostHooks

    page = HOOKS_PAGE.read_text()
    hooks = [n for n in vars(FencepostHooks) if n.startswith("fencepost_")]
    assert hooks
    for name in hooks:
        params = [
            p for p in inspect.signature(getattr(FencepostHooks, name)).parameters if p != "self"
        ]
        heading = re.search(rf"^### `{name}\(([^)]*)\)`", page, re.M)
        assert heading, f"{name} is not documented in {HOOKS_PAGE}"
        assert [p.strip() for p in heading.group(1).split(",")] == params, name
    documented = re.findall(r"^### `(fencepost_\w+)\(", page, re.M)
    assert sorted(documented) == sorted(hooks), "the page documents hooks that do not exist"


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(ROOT / "src"))
    CLI_PAGE.write_text(render_cli_reference())
    print(f"wrote {CLI_PAGE}")


def test_the_http_error_codes_table_matches_the_one_the_app_uses():
    """docs/reference/http-api.md lists ``_errors.ERROR_CODES`` (HTTP-I10)."""
    from fencepost.surface.http._errors import ERROR_CODES

    rows = re.findall(r"^\| `(\w+)` \| (\d{3}) \| (.+?) \|$", HTTP_PAGE.read_text(), re.M)
    assert rows == [(code, str(e.status), e.description) for code, e in ERROR_CODES.items()], (
        "docs/reference/http-api.md's error table and _errors.ERROR_CODES disagree"
    )
