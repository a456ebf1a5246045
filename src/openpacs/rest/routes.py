"""Rules under /api/routes (admins): routing (``openpacs route ...``) and workflow rules
(``openpacs workflow ...``), one engine: event + conditions + actions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.rules import Rule
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(prefix="/api/routes", tags=["routing"])
Router = Annotated[Principal, Depends(require(Permission.ROUTING))]


class ConditionModel(BaseModel):
    keyword: str = Field(min_length=1, max_length=64, description="DICOM keyword, CallingAETitle or CalledAETitle.")
    pattern: str = Field(max_length=1000)
    kind: Literal["exact", "wildcard", "regex"] = "wildcard"


class ActionModel(BaseModel):
    kind: Literal["forward", "stow", "prefetch", "set-status", "assign", "hl7-notify"] = "forward"
    node: str = Field(default="", max_length=64, description="forward: the node to C-STORE to; prefetch: from.")
    url: str = Field(default="", max_length=1000, description="stow: the DICOMweb service root URL.")
    transfer_syntax: str = Field(default="", max_length=64, pattern=r"^([0-9]+(\.[0-9]+)*)?$")
    priors: int = Field(default=3, ge=1, le=50, description="prefetch: how many prior studies, newest first.")
    modalities: str = Field(default="", max_length=200, description="prefetch: only priors of these (CT,MR).")
    max_age_days: int = Field(default=0, ge=0, description="prefetch: only priors at most this old (0: any).")
    commit: bool = Field(default=False, description="forward: ask for storage commitment once delivered.")
    delete_after: bool = Field(default=False, description="forward: delete here what the node committed to.")
    lossy: str = Field(default="", max_length=64, pattern=r"^([0-9]+(\.[0-9]+)*)?$",
                       description="forward: send a lossy copy in this transfer syntax.")  # fmt: skip
    quality: int = Field(default=0, ge=0, le=255, description="lossy: JPEG-LS NEAR value or JPEG 2000 ratio.")
    status: str = Field(default="", max_length=16, description="set-status: a procedure status; hl7-notify: IP, CM.")
    worklist: str = Field(default="", max_length=64, description="assign: the reading worklist's name.")
    hl7: str = Field(default="", max_length=64, description="hl7-notify: the HL7 destination's name.")


class RuleModel(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    event: Literal[
        "instance",
        "stable",
        "order-received",
        "patient-arrived",
        "procedure-started",
        "mpps-completed",
        "procedure-completed",
        "report-preliminary",
        "report-final",
        "report-amended",
        "order-cancelled",
    ] = "instance"
    conditions: list[ConditionModel] = Field(default_factory=list, max_length=50)
    actions: list[ActionModel] = Field(min_length=1, max_length=10)
    enabled: bool = True
    priority: int = Field(default=0, ge=-1000, le=1000)
    description: str = Field(default="", max_length=400)


@router.get("", summary="List the routing rules")
async def list_rules(request: Request, caller: Router) -> list[dict[str, Any]]:
    return [r.to_json() for r in await run_in_threadpool(services(request).routing.rules)]


def _rule(body: RuleModel) -> Rule:
    return Rule.from_json(body.model_dump())


@router.post("", summary="Add a rule (effective at once)", status_code=201)
async def add_rule(body: RuleModel, request: Request, caller: Router) -> dict[str, Any]:
    return (await run_in_threadpool(services(request).routing.add, _rule(body), caller.actor)).to_json()


class ReplayModel(BaseModel):
    rules: list[RuleModel] = Field(min_length=1, max_length=100)
    days: float = Field(default=7, gt=0, le=366)


@router.post("/replay", summary="What draft workflow rules would have done over the last days (nothing is done)")
async def replay(body: ReplayModel, request: Request, caller: Router) -> list[dict[str, Any]]:
    rules = [_rule(r) for r in body.rules]
    found = await run_in_threadpool(services(request).workflow_rules.replay, rules, body.days)
    return [f.to_json() for f in found]


@router.get("/test", summary="Which rules a stored study would trigger (nothing is sent)")
async def test_rules(
    request: Request,
    caller: Router,
    study: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")],
) -> list[dict[str, Any]]:
    return await run_in_threadpool(services(request).routing.test, study)


@router.get("/{name}", summary="Show a routing rule")
async def get_rule(name: str, request: Request, caller: Router) -> dict[str, Any]:
    return (await run_in_threadpool(services(request).routing.rule, name)).to_json()


@router.put("/{name}", summary="Change a rule (a new version; the old ones are kept)")
async def change_rule(name: str, body: RuleModel, request: Request, caller: Router) -> dict[str, Any]:
    if body.name != name:
        raise HTTPException(400, "the body's name is not the rule's")
    return (await run_in_threadpool(services(request).routing.update, _rule(body), caller.actor)).to_json()


@router.get("/{name}/history", summary="Every version of a rule, oldest first")
async def rule_history(name: str, request: Request, caller: Router) -> list[dict[str, Any]]:
    return await run_in_threadpool(services(request).routing.history, name)


@router.delete("/{name}", summary="Remove a routing rule", status_code=204)
async def remove_rule(name: str, request: Request, caller: Router) -> None:
    await run_in_threadpool(services(request).routing.remove, name, caller.actor)
