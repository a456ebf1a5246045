"""``openpacs workflow ...``: workflow rules (the rule engine of ``openpacs route``, on the
workflow's events), their versions, and ``workflow test`` to replay a draft on the last days."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from openpacs import bootstrap
from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, cli_actor, console, err, fail, with_app
from openpacs.domain.errors import InvalidQuery
from openpacs.domain.rules import WORKFLOW_ACTIONS, WORKFLOW_EVENTS, Action, ActionKind, Condition, Rule, RuleEvent

workflow_app = typer.Typer(
    help="Workflow rules: on an event (order received, MPPS completed, study stable, report final...) and"
    " conditions, set a status, assign a reading worklist, forward, notify the RIS.",
    no_args_is_help=True,
)
_EVENTS = ", ".join(str(e) for e in [*WORKFLOW_EVENTS, RuleEvent.STABLE])


def _rule(
    name: str, on: str, when: list[str], set_status: str, assign: str, forward: str, hl7: str, hl7_status: str,
    priority: int, description: str, enabled: bool,
) -> Rule:  # fmt: skip
    try:
        event = RuleEvent(on)
    except ValueError as exc:
        raise InvalidQuery(f"--on is one of {_EVENTS}") from exc
    actions = []
    if set_status:
        actions.append(Action(ActionKind.SET_STATUS, status=set_status))
    if assign:
        actions.append(Action(ActionKind.ASSIGN, worklist=assign))
    if forward:
        actions.append(Action(ActionKind.FORWARD, node=forward))
    if hl7:
        actions.append(Action(ActionKind.HL7_NOTIFY, hl7=hl7, status=hl7_status))
    if not actions:
        raise InvalidQuery("give an action: --set-status, --assign, --forward or --hl7")
    conditions = [Condition.parse(text) for text in when]
    return Rule(name, event, conditions, actions, enabled=enabled, priority=priority, description=description)


Name = Annotated[str, typer.Argument(help="Unique name of the rule.")]
On = Annotated[str, typer.Option("--on", help=f"The event: {_EVENTS}.")]
When = Annotated[
    list[str] | None, typer.Option("--when", help="KEYWORD=wildcard, KEYWORD==exact or KEYWORD~=regex; repeat.")
]
SetStatus = Annotated[str, typer.Option("--set-status", help="Move the procedure to this status.")]
Assign = Annotated[str, typer.Option("--assign", help="Put its studies on this reading worklist.")]
Forward = Annotated[str, typer.Option("--forward", help="Forward its studies to this node.")]
Hl7 = Annotated[str, typer.Option("--hl7", help="Send an order status update to this HL7 destination.")]
Hl7Status = Annotated[str, typer.Option("--hl7-status", help="ORC-5 of the update: IP or CM.")]
Priority = Annotated[int, typer.Option("--priority", help="Higher first.")]
Description = Annotated[str, typer.Option("--description", help="Free text.")]
Disabled = Annotated[bool, typer.Option("--disabled", help="Store it switched off.")]


def _save(change: bool, name: str, on: str, when: list[str] | None, set_status: str, assign: str, forward: str,
          hl7: str, hl7_status: str, priority: int, description: str, disabled: bool, data_dir: Path | None,
          config: Path | None, database_url: str | None) -> None:  # fmt: skip
    def run(app: bootstrap.Application) -> Rule:
        rule = _rule(name, on, when or [], set_status, assign, forward, hl7, hl7_status, priority, description,
                     not disabled)  # fmt: skip
        return app.routing.update(rule, cli_actor()) if change else app.routing.add(rule, cli_actor())

    rule = with_app(config, data_dir, database_url, run)
    console.print(f"workflow rule {rule.name} {'changed' if change else 'added'} (version {rule.version})",
                  highlight=False)  # fmt: skip


@workflow_app.command("add")
def add(
    name: Name, on: On, when: When = None, set_status: SetStatus = "", assign: Assign = "", forward: Forward = "",
    hl7: Hl7 = "", hl7_status: Hl7Status = "CM", priority: Priority = 0, description: Description = "",
    disabled: Disabled = False, data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """Add a workflow rule; a running server applies it to the next events."""
    _save(False, name, on, when, set_status, assign, forward, hl7, hl7_status, priority, description, disabled,
          data_dir, config, database_url)  # fmt: skip


@workflow_app.command("change")
def change(
    name: Name, on: On, when: When = None, set_status: SetStatus = "", assign: Assign = "", forward: Forward = "",
    hl7: Hl7 = "", hl7_status: Hl7Status = "CM", priority: Priority = 0, description: Description = "",
    disabled: Disabled = False, data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """Replace a workflow rule: a new version (the old ones are kept: workflow history)."""
    _save(True, name, on, when, set_status, assign, forward, hl7, hl7_status, priority, description, disabled,
          data_dir, config, database_url)  # fmt: skip


def _is_workflow(rule: Rule) -> bool:
    return rule.event in WORKFLOW_EVENTS or any(a.kind in WORKFLOW_ACTIONS for a in rule.actions)


@workflow_app.command("list")
def list_rules(
    as_json: JsonOut = False, data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """The workflow rules, highest priority first."""
    rules = [r for r in with_app(config, data_dir, database_url, lambda app: app.routing.rules()) if _is_workflow(r)]
    if as_json:
        print(json.dumps([r.to_json() for r in rules], indent=2))
        return
    table = Table("name", "on", "when", "do", "version", "enabled")
    for rule in rules:
        conditions = " ".join(f"{c.keyword}={c.pattern}" for c in rule.conditions)
        table.add_row(
            rule.name, str(rule.event), conditions, "; ".join(_describe(a) for a in rule.actions), str(rule.version),
            str(rule.enabled),
        )  # fmt: skip
    console.print(table)


def _describe(action: Action) -> str:
    from openpacs.services.workflow_rules import describe

    return describe(action)


@workflow_app.command("remove")
def remove(name: Name, data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Remove a workflow rule (its history is kept)."""
    with_app(config, data_dir, database_url, lambda app: app.routing.remove(name, cli_actor()))
    console.print(f"workflow rule {name} removed", highlight=False)


@workflow_app.command("history")
def history(
    name: Name,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Every version of a rule, who made it and when."""
    found = with_app(config, data_dir, database_url, lambda app: app.routing.history(name))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("version", "change", "by", "at", "rule")
    for entry in found:
        table.add_row(
            str(entry["version"]), entry["change"], entry["changed_by"], entry["changed_at"][:19],
            json.dumps(entry["rule"])[:120],
        )  # fmt: skip
    console.print(table)


def read_rules(path: Path) -> list[Rule]:
    """Draft rules from a JSON file (a list of rules, as ``workflow list --json`` prints them) or
    a TOML file (``[[rules]]`` tables of the same fields)."""
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text).get("rules", []) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise InvalidQuery(f"{path}: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("rules", [])
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise InvalidQuery(f"{path}: no rules (a JSON list of rules, or [[rules]] tables in TOML)")
    return [Rule.from_json(r) for r in data]


@workflow_app.command("test")
def replay(
    rules_file: Annotated[Path, typer.Argument(help="Draft rules: JSON list, or TOML with [[rules]].")],
    days: Annotated[float, typer.Option("--days", min=0.01, max=366, help="Replay this many past days.")] = 7,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Replay the last days' workflow events against draft rules and show what they would have
    done; nothing is changed and nothing is sent."""
    try:
        rules = read_rules(rules_file)
    except InvalidQuery as exc:
        raise fail(exc) from exc
    firings = with_app(config, data_dir, database_url, lambda app: app.workflow_rules.replay(rules, days))
    if as_json:
        print(json.dumps([f.to_json() for f in firings], indent=2))
        return
    if not firings:
        err.print(f"no rule of {rules_file} would have fired in the last {days:g} days")
        return
    table = Table("at", "event", "accession", "procedure", "rule", "would")
    for firing in firings:
        table.add_row(
            firing.at.isoformat()[:19], firing.event, firing.accession, str(firing.procedure), firing.rule,
            "; ".join(firing.actions),
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(firings)} firings of {len({f.rule for f in firings})} rules", highlight=False)
