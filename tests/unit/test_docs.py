"""Documentation that must not fall behind the code: every setting and every command."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel

from openpacs.cli.main import app
from openpacs.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The model of a field: a nested section, or the item model of a list of tables."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return _model_of(item)
    return None


def setting_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Dotted TOML keys of every leaf setting: ``data_dir``, ``dicom.max_pdu_length``, ``nodes.port``."""
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        if nested is None:
            yield prefix + name
        else:
            yield from setting_keys(nested, f"{prefix}{name}.")


def command_names(command: object, prefix: str = "openpacs") -> Iterator[str]:
    """Full names of the leaf commands of the command tree Typer builds (groups have ``commands``)."""
    subcommands: dict[str, object] | None = getattr(command, "commands", None)
    if subcommands is None:
        yield prefix
        return
    for name, sub in subcommands.items():
        yield from command_names(sub, f"{prefix} {name}")


SETTINGS = sorted(setting_keys(Settings))
COMMANDS = sorted(command_names(typer.main.get_command(app)))


def test_the_walk_finds_nested_sections_and_commands() -> None:
    """The walks see nested sections, the [[nodes]] tables and the sub-commands."""
    assert {"data_dir", "dicom.max_pdu_length", "storage.fsync", "nodes.port"} <= set(SETTINGS)
    assert {"openpacs serve", "openpacs import", "openpacs node add", "openpacs db upgrade"} <= set(COMMANDS)


@pytest.mark.parametrize("key", SETTINGS)
def test_every_setting_is_documented(key: str) -> None:
    """Each setting appears as `key` in the configuration reference."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"`{key}`" in text, f"setting {key} is not documented in docs/configuration.md"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    """Each ``openpacs`` command appears in the operations guide."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    assert command in text, f"command {command!r} is not documented in docs/operations.md"


def test_every_table_is_in_the_schema_reference() -> None:
    """docs/schema.md names each table of the index (the SQL troubleshooting reference)."""
    from openpacs.adapters.index.tables import metadata

    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    missing = [name for name in metadata.tables if f"`{name}`" not in text]
    assert not missing, f"tables not described in docs/schema.md: {missing}"
    for column in metadata.tables["instance"].columns:
        assert f"`{column.name}`" in text


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (no packages): two of one name stop the run."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
