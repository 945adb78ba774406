"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["config_option", "home_option"]

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory [default: $FENCEPOST_HOME or ~/.fencepost].",
)
config_option = click.option(
    "--config", default=None, help="Config file [default: <home>/fencepost.toml]."
)
