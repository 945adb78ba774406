"""Drift-prone docs are generated or tested (STYLE rule 9): the CLI reference, the config
reference, the plugin hooks, the HTTP error codes, the exports. Regenerate the CLI and config
references with ``python tests/test_docs.py``."""

from __future__ import annotations

import inspect
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
HOOKS_PAGE = ROOT / "docs" / "reference" / "plugins.md"
HTTP_PAGE = ROOT / "docs" / "reference" / "http-api.md"
CONFIG_PAGE = ROOT / "docs" / "reference" / "config.md"


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


def test_the_http_error_codes_table_matches_the_one_the_app_uses():
    """docs/reference/http-api.md lists ``_errors.ERROR_CODES`` (HTTP-I10)."""
    from fencepost.surface.http._errors import ERROR_CODES

    rows = re.findall(r"^\| `(\w+)` \| (\d{3}) \| (.+?) \|$", HTTP_PAGE.read_text(), re.M)
    assert rows == [(code, str(e.status), e.description) for code, e in ERROR_CODES.items()], (
        "docs/reference/http-api.md's error table and _errors.ERROR_CODES disagree"
    )


# ---- the config reference -----------------------------------------------------------------------

#: The name each ``*`` stands for in the generated example file and the probes below.
SAMPLE = {
    "providers": "local",
    "agents": "ops",
    "models": "local/qwen",
    "scripts": "demo",
    "mcp": "git",
}
_PLACEHOLDER = {"models": '"<provider/model>"'}


def _heading(section: str) -> str:
    if not section:
        return "Top level"
    parts = section.split(".")
    shown = ".".join(
        _PLACEHOLDER.get(parts[i - 1], "<name>") if p == "*" else p for i, p in enumerate(parts)
    )
    return f"`[[{shown}]]`" if parts[-1] == "steps" else f"`[{shown}]`"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _example_file() -> str:
    """A fencepost.toml setting every key to its example (tests parse it)."""
    from fencepost.runtime.config import CONFIG_KEYS, CONFIG_SECTIONS

    out: list[str] = []
    for section in CONFIG_SECTIONS:
        keys = [
            k for k in CONFIG_KEYS
            if k.section == section and k.example and not any(
                s == f"{section}.{k.key}" for s in CONFIG_SECTIONS
            )
        ]  # fmt: skip
        if not keys:
            continue
        if section:
            parts = section.split(".")
            names = [SAMPLE[parts[i - 1]] if p == "*" else p for i, p in enumerate(parts)]
            name = ".".join(f'"{n}"' if "/" in n else n for n in names)
            out += ["", f"[[{name}]]" if parts[-1] == "steps" else f"[{name}]"]
        out += [f"{k.key} = {k.example}" for k in keys]
    return "\n".join(out).strip() + "\n"


def render_config_reference() -> str:
    from fencepost.runtime.config import CONFIG_KEYS, CONFIG_SECTIONS

    lines = [
        "# Configuration reference",
        "",
        "Every key of `fencepost.toml`, generated from `CONFIG_KEYS` in",
        "`src/fencepost/runtime/config.py`, the table the parser takes its allowed keys",
        "from (`tests/test_docs.py` fails when this page, that table and the parser",
        "disagree on a key or a default; `python tests/test_docs.py` rewrites it).",
        "",
        "The file is `<home>/fencepost.toml` (home: `--home`, else `$FENCEPOST_HOME`,",
        "else `~/.fencepost`); `fencepost init` writes a commented starter and",
        "`fencepost doctor` checks it. Every key is optional unless marked required. An",
        "unknown key, a wrong type or a bad value is refused with the file, the key and",
        "the line. Secrets are never in the file: name the environment variable that",
        "holds them (`api_key_env`, `token_env`).",
        "",
    ]
    for section, about in CONFIG_SECTIONS.items():
        keys = [k for k in CONFIG_KEYS if k.section == section]
        lines += [f"## {_heading(section)}", "", about, ""]
        lines += [
            "| key | type | default | example | what it does |",
            "| --- | --- | --- | --- | --- |",
        ]
        for k in keys:
            default = k.default_text if k.default_text is not None else f"`{_toml(k.default)}`"
            example = f"`{k.example}`" if k.example else "-"
            lines.append(f"| `{k.key}` | {k.type} | {default} | {example} | {k.doc} |")
        lines.append("")
    lines += [
        "## A file with every key",
        "",
        "Each key set to its example (illustrations, not advice; the test suite parses this file):",
        "",
        "```toml",
        *_example_file().splitlines(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def test_the_config_reference_matches_the_key_table():
    assert CONFIG_PAGE.read_text() == render_config_reference(), (
        "docs/reference/config.md is stale: run `python tests/test_docs.py`"
    )


def _minimal() -> dict[str, Any]:
    """A config with one entry in every named section and no optional key set."""
    return {
        "providers": {"local": {}},
        "agents": {
            "ops": {"model": "scripted/demo", "heartbeat": {}, "compaction": {}, "exec": {}}
        },
        "models": {"local/qwen": {}},
        "scripts": {"demo": {"steps": [{}]}},
        "mcp": {"git": {"command": "mcp-server-git"}},  # a server needs a command or a url
        **{s: {} for s in ("cron", "server", "plugins", "limits", "retention", "approvals")},
    }


def _table_at(doc: dict[str, Any], section: str) -> dict[str, Any]:
    node: Any = doc
    parts = section.split(".") if section else []
    for i, p in enumerate(parts):
        node = node[SAMPLE[parts[i - 1]] if p == "*" else p]
        if p == "steps":
            node = node[0]
    return node


def _read(cfg: Any, path: str) -> Any:
    parts = path.split(".")
    node = cfg
    for i, p in enumerate(parts):
        if p == "*":
            node = node[
                str(next(iter(node))) if parts[i - 1] != "context_windows" else "local/qwen"
            ]
        elif p.isdigit():
            node = node[int(p)]
        else:
            node = node[p] if isinstance(node, dict) else getattr(node, p)
    return node


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return norm(a) == norm(b)


def test_every_key_the_parser_accepts_is_on_the_page_and_no_other():
    """Probe the parser itself: an unknown key in each section is refused with the list of the
    keys it accepts, which must be the page's keys (plus its sub-sections)."""
    from fencepost import ConfigError
    from fencepost.runtime.config import CONFIG_KEYS, CONFIG_SECTIONS, parse_config

    page = CONFIG_PAGE.read_text()
    for section in CONFIG_SECTIONS:
        doc = _minimal()
        _table_at(doc, section)["zz_unknown"] = 1
        try:
            parse_config(doc)
        except ConfigError as exc:
            listed = re.search(r"(?:allowed|use):? (.+)$", str(exc).split(" (key")[0])
            assert listed, (section, str(exc))
            accepted = {k.strip() for k in listed.group(1).split(",")}
        else:
            raise AssertionError(f"[{section}] accepted an unknown key")
        if section:
            subs = {s.rsplit(".", 1)[1] for s in CONFIG_SECTIONS if s.startswith(f"{section}.")}
        else:
            subs = {s.split(".")[0] for s in CONFIG_SECTIONS if s}
        documented = {k.key for k in CONFIG_KEYS if k.section == section}
        assert accepted == documented | subs, section
        for key in documented:
            assert f"| `{key}` |" in page.split(_heading(section), 1)[1], (section, key)


def test_every_documented_default_is_what_the_parser_uses():
    from fencepost.runtime.config import CONFIG_KEYS, parse_config

    cfg = parse_config(_minimal())
    for k in CONFIG_KEYS:
        if k.read is None or k.required:
            continue
        assert _same(_read(cfg, k.read), k.default), (k.section, k.key, _read(cfg, k.read))


def test_the_example_file_parses_and_every_example_lands_where_documented():
    from fencepost.runtime.config import CONFIG_KEYS, parse_config

    text = _example_file()
    assert text in CONFIG_PAGE.read_text()
    cfg = parse_config(tomllib.loads(text), source=text)
    for k in CONFIG_KEYS:
        if k.read is None or not k.example:
            continue
        want = tomllib.loads(f"v = {k.example}")["v"]
        assert _same(_read(cfg, k.read), want), (k.section, k.key)


def test_a_refused_key_on_the_page_is_refused_by_the_parser():
    from fencepost import ConfigError
    from fencepost.runtime.config import CONFIG_KEYS, parse_config

    refused = [k for k in CONFIG_KEYS if k.default_text == "refused"]
    assert refused
    for k in refused:
        doc = _minimal()
        _table_at(doc, k.section)[k.key] = "x"
        try:
            parse_config(doc)
        except ConfigError as exc:
            assert exc.key and exc.key.endswith(k.key)
        else:
            raise AssertionError(f"{k.section}.{k.key} was accepted")


def test_the_starter_config_sets_only_documented_keys():
    """``fencepost init``'s template, commented keys included, uses the page's keys."""
    from fencepost.runtime.config import CONFIG_KEYS, STARTER_CONFIG

    documented = {k.key for k in CONFIG_KEYS}
    used = set(re.findall(r"^#? ?(\w+) = ", STARTER_CONFIG, re.M))
    assert used and used <= documented, used - documented


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(ROOT / "src"))
    CLI_PAGE.write_text(render_cli_reference())
    print(f"wrote {CLI_PAGE}")
    CONFIG_PAGE.write_text(render_config_reference())
    print(f"wrote {CONFIG_PAGE}")
