"""``openpacs route ...`` and ``openpacs jobs ...``: routing rules and the job queue, with the
names and meaning of ``/api/routes`` and ``/api/jobs``. Same ``--data-dir``/``--config``
as ``serve``; effective for a running server without a restart."""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from openpacs import bootstrap
from openpacs.cli.common import ConfigFile, DatabaseUrl, DataDir, JsonOut, cli_actor, console, err, with_app
from openpacs.domain.jobs import Job
from openpacs.domain.rules import Action, ActionKind, Condition, Rule, RuleEvent

route_app = typer.Typer(help="Routing rules: what is forwarded where, and when.", no_args_is_help=True)
jobs_app = typer.Typer(help="The job queue: forwarding (and later retrieval, migration).", no_args_is_help=True)

T = TypeVar("T")


@route_app.command("add")
def route_add(
    name: Annotated[str, typer.Argument(help="Unique name of the rule.")],
    to: Annotated[str, typer.Option("--to", help="Node to forward to (C-STORE).")] = "",
    stow_url: Annotated[str, typer.Option("--stow-url", help="DICOMweb service to forward to (STOW-RS).")] = "",
    prefetch_from: Annotated[
        str, typer.Option("--prefetch-from", help="Fetch the patient's prior studies from this node.")
    ] = "",
    priors: Annotated[int, typer.Option("--priors", min=1, max=50, help="How many priors (newest first).")] = 3,
    prior_modalities: Annotated[
        str, typer.Option("--prior-modalities", help="Only priors with these modalities (CT,MR).")
    ] = "",
    prior_max_age_days: Annotated[
        int, typer.Option("--prior-max-age-days", min=0, help="Only priors at most this old (0: any).")
    ] = 0,
    when: Annotated[
        list[str], typer.Option("--when", help="KEYWORD=wildcard, KEYWORD==exact or KEYWORD~=regex; repeat.")
    ] = [],  # noqa: B006 (typer's list option)
    on: Annotated[str, typer.Option("--on", help="instance (each one as it arrives) or stable (the study).")] = (
        "instance"
    ),
    transfer_syntax: Annotated[str, typer.Option("--transfer-syntax", help="Send in this syntax (UID).")] = "",
    commit: Annotated[
        bool, typer.Option("--commit", help="Ask the node for storage commitment once the study is delivered.")
    ] = False,
    delete_after: Annotated[
        bool, typer.Option("--delete-after", help="Delete here what the node committed to (needs --commit).")
    ] = False,
    lossy: Annotated[
        str,
        typer.Option("--lossy", help="Send a lossy copy in this syntax: 1.2.840.10008.1.2.4.81 or .91 (UID)."),
    ] = "",
    quality: Annotated[
        int, typer.Option("--quality", min=0, help="Lossy: JPEG-LS NEAR value (2), or JPEG 2000 ratio (10).")
    ] = 0,
    priority: Annotated[int, typer.Option("--priority", help="Higher first.")] = 0,
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a rule; a running server applies it to what arrives next."""
    if sum(map(bool, (to, stow_url, prefetch_from))) != 1:
        err.print("[red]error:[/red] give --to NODE, --stow-url URL or --prefetch-from NODE")
        raise typer.Exit(2)
    if on not in ("instance", "stable"):
        err.print("[red]error:[/red] --on is instance or stable")
        raise typer.Exit(2)

    def add(app: bootstrap.Application) -> Rule:
        if prefetch_from:
            action = Action(
                ActionKind.PREFETCH,
                node=prefetch_from,
                priors=priors,
                modalities=prior_modalities,
                max_age_days=prior_max_age_days,
            )
        elif to:
            action = Action(
                ActionKind.FORWARD,
                node=to,
                transfer_syntax=transfer_syntax,
                commit=commit,
                delete_after=delete_after,
                lossy=lossy,
                quality=quality,
            )
        else:
            action = Action(ActionKind.STOW, url=stow_url, transfer_syntax=transfer_syntax)
        conditions = [Condition.parse(text) for text in when]
        rule = Rule(name, RuleEvent(on), conditions, [action], priority=priority, description=description)
        return app.routing.add(rule, cli_actor())

    rule = with_app(config, data_dir, database_url, add)
    if as_json:
        print(json.dumps(rule.to_json(), indent=2))
        return
    console.print(f"rule {rule.name} added")


@route_app.command("list")
def route_list(
    as_json: JsonOut = False, data_dir: DataDir = None, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """The rules, highest priority first."""
    rules = with_app(config, data_dir, database_url, lambda app: app.routing.rules())
    if as_json:
        print(json.dumps([r.to_json() for r in rules], indent=2))
        return
    table = Table("name", "on", "when", "to", "syntax", "priority", "enabled")
    for rule in rules:
        conditions = " ".join(f"{c.keyword}{_OPS[str(c.kind)]}{c.pattern}" for c in rule.conditions)
        targets = ", ".join(a.node or a.url for a in rule.actions)
        syntaxes = ", ".join(a.transfer_syntax for a in rule.actions if a.transfer_syntax)
        table.add_row(rule.name, str(rule.event), conditions, targets, syntaxes, str(rule.priority), str(rule.enabled))
    console.print(table)


_OPS = {"wildcard": "=", "exact": "==", "regex": "~="}


@route_app.command("remove")
def route_remove(
    name: Annotated[str, typer.Argument(help="The rule.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a rule (jobs it queued go on)."""
    with_app(config, data_dir, database_url, lambda app: app.routing.remove(name, cli_actor()))
    console.print(f"rule {name} removed")


@route_app.command("test")
def route_test(
    study: Annotated[str, typer.Argument(help="Study Instance UID of a stored study.")],
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Which rules the study would trigger, and for how many of its instances; sends nothing."""
    found = with_app(config, data_dir, database_url, lambda app: app.routing.test(study))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("rule", "on", "fires", "instances", "to")
    for entry in found:
        targets = ", ".join(a.get("node") or a.get("url", "") for a in entry["actions"])
        fires = "yes" if entry["fires"] else "no"
        table.add_row(entry["rule"], entry["event"], fires, f"{entry['instances']} of {entry['of']}", targets)
    console.print(table)


def _job_row(table: Table, job: Job) -> None:
    progress = job.progress
    done = f"{progress.get('position', 0)}/{progress.get('total', '?')}" if progress else ""
    table.add_row(
        str(job.pk),
        str(job.kind),
        job.queue,
        str(job.state),
        job.study_instance_uid,
        done,
        str(progress.get("parked", 0)) if progress else "0",
        str(job.attempts),
        job.last_error[:60],
    )


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option("--state", help="pending, running, paused, done, failed...")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The jobs, newest first, and how many there are in each state."""
    found, counts = with_app(
        config, data_dir, database_url, lambda app: (app.jobs.jobs(state, limit), app.jobs.counts())
    )
    if as_json:
        print(json.dumps({"counts": counts, "jobs": [j.to_json() for j in found]}, indent=2))
        return
    table = Table("id", "kind", "to", "state", "study", "sent", "parked", "tries", "last error")
    for job in found:
        _job_row(table, job)
    console.print(table)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")


@jobs_app.command("forward")
def jobs_forward(
    study: Annotated[str, typer.Argument(help="Study Instance UID of a stored study.")],
    to: Annotated[str, typer.Option("--to", help="The node to send it to.")],
    transfer_syntax: Annotated[str, typer.Option("--transfer-syntax", help="Send in this syntax (UID).")] = "",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Send a stored study to a node, as a job that a running server carries out."""
    job = with_app(
        config,
        data_dir,
        database_url,
        lambda app: app.jobs.forward(study, to, cli_actor(), transfer_syntax=transfer_syntax),
    )
    if as_json:
        print(json.dumps(job.to_json(), indent=2))
        return
    console.print(f"job {job.pk}: {study} to {to} ({job.state})")


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="The job.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A job in full (JSON), with the instances its destination refused."""
    print(json.dumps(with_app(config, data_dir, database_url, lambda app: app.jobs.show(job_id)), indent=2))


def _change(verb: str, doc: str) -> None:
    def command(
        job_id: Annotated[int, typer.Argument(help="The job.")],
        data_dir: DataDir = None,
        config: ConfigFile = None,
        database_url: DatabaseUrl = None,
    ) -> None:
        job = with_app(config, data_dir, database_url, lambda app: getattr(app.jobs, verb)(job_id, cli_actor()))
        console.print(f"job {job.pk} is {job.state}")

    command.__doc__ = doc
    jobs_app.command(verb)(command)


_change("retry", "Run a failed or waiting job again now.")
_change("cancel", "Cancel a job (what it sent stays sent).")
_change("pause", "Pause a job; resume takes it up where it stopped.")
_change("resume", "Resume a paused job.")


@jobs_app.command("alerts")
def jobs_alerts(
    open_only: Annotated[bool, typer.Option("--open", help="Only those not acknowledged.")] = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Alerts: instances a destination refused, jobs that failed."""
    found = with_app(config, data_dir, database_url, lambda app: app.jobs.alerts(200, open_only))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "when", "kind", "message", "acknowledged")
    for alert in found:
        table.add_row(
            str(alert["id"]), alert["created_at"], alert["kind"], alert["message"], alert["acknowledged_at"] or ""
        )
    console.print(table)


remote_app = typer.Typer(help="Other PACS: query (C-FIND) and retrieve (C-MOVE to us).", no_args_is_help=True)


def _pairs(keys: list[str]) -> dict[str, str]:
    out = {}
    for pair in keys:
        keyword, sep, value = pair.partition("=")
        if not keyword.strip():
            err.print(f"[red]error:[/red] -k takes Keyword=value or Keyword, not {pair!r}")
            raise typer.Exit(2)
        out[keyword.strip()] = value if sep else ""
    return out


@remote_app.command("find")
def remote_find(
    node: Annotated[str, typer.Argument(help="The node to query.")],
    level: Annotated[str, typer.Option("--level", help="PATIENT, STUDY, SERIES or IMAGE.")] = "STUDY",
    keys: Annotated[
        list[str], typer.Option("-k", "--key", help="Keyword=value to match, or Keyword to get back; repeat.")
    ] = [],  # noqa: B006 (typer's list option)
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """C-FIND against a node; prints its answers."""
    from openpacs.domain import dicom_json as dj
    from openpacs.domain.tags import keyword_of

    wanted = _pairs(keys)
    answers = with_app(
        config, data_dir, database_url, lambda app: app.remote.find(node, level.upper(), wanted, cli_actor())
    )
    if as_json:
        print(json.dumps(answers, indent=2))
        return
    columns = sorted({k for a in answers for k in a if k != "00080052"})
    table = Table(*[keyword_of(int(k, 16)) or k for k in columns])
    for answer in answers:
        table.add_row(*[dj.multi_text(answer, k) for k in columns])
    console.print(table)
    console.print(f"{len(answers)} answers")


@remote_app.command("retrieve")
def remote_retrieve(
    node: Annotated[str, typer.Argument(help="The node to retrieve from.")],
    uids: Annotated[list[str], typer.Argument(help="Study (or series, instance) Instance UIDs.")],
    level: Annotated[str, typer.Option("--level", help="STUDY, SERIES or IMAGE.")] = "STUDY",
    via: Annotated[str, typer.Option("--via", help="move (C-MOVE to our AE title) or get (C-GET).")] = "move",
    as_json: JsonOut = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Have the node send them to us (C-MOVE) or fetch them (C-GET), as a job a running server follows."""
    job = with_app(
        config,
        data_dir,
        database_url,
        lambda app: app.remote.retrieve(node, level.upper(), uids, cli_actor(), via=via),
    )
    if as_json:
        print(json.dumps(job.to_json(), indent=2))
        return
    console.print(f"job {job.pk}: retrieve {len(uids)} {level.lower()} from {node} ({job.state})")
