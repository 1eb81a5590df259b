"""The guide's settings table and compose.yaml name only real HETU_* settings."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from hetu_gateway.cli import app as gateway_app
from hetu_logic.cli import app as logic_app

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"^\| (both|logic|gateway) \| `(--[a-z-]+)[^`]*` \| `(HETU_[A-Z_]+)` \|",
    re.MULTILINE,
)


def envvars(app: typer.Typer) -> dict[str, str]:
    """Option flag -> env var of the CLI's (single) command."""
    command = typer.main.get_command(app)
    return {
        param.opts[0]: str(param.envvar)
        for param in command.params
        if getattr(param, "envvar", None)
    }


def test_guide_settings_table_matches_the_clis() -> None:
    clis = {"logic": envvars(logic_app), "gateway": envvars(gateway_app)}
    text = (ROOT / "docs" / "guide.md").read_text()
    rows = [m.groups() for m in ROW.finditer(text)]
    assert rows, "the settings table in docs/guide.md is gone"
    listed: dict[str, set[str]] = {"logic": set(), "gateway": set()}
    for process, flag, env in rows:
        for name in ("logic", "gateway") if process == "both" else (process,):
            assert clis[name].get(flag) == env, (name, flag, env)
            listed[name].add(flag)
    for name, options in clis.items():
        assert set(options) == listed[name], f"{name} options missing from the guide"


def test_compose_uses_known_settings() -> None:
    known = set(envvars(logic_app).values()) | set(envvars(gateway_app).values())
    text = (ROOT / "compose.yaml").read_text()
    used = set(re.findall(r"^\s+(HETU_[A-Z_]+):", text, re.MULTILINE))
    assert used, "compose.yaml sets no HETU_* variables"
    assert used <= known, used - known
