"""DICOM nodes: list and show (readers), add, change and remove (admins), echo (admins, technologists)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from openpacs.domain.errors import PeerError
from openpacs.domain.records import Node
from openpacs.domain.users import Permission
from openpacs.http.auth import Principal, require
from openpacs.http.context import services

router = APIRouter(prefix="/api/nodes", tags=["nodes"])


class NodeModel(BaseModel):
    """A DICOM application entity and its permissions."""

    name: str = Field(min_length=1, max_length=64)
    ae_title: str = Field(min_length=1, max_length=16)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    allow_store: bool = True
    allow_find: bool = True
    allow_get: bool = True
    allow_move_destination: bool = True
    check_host: bool = False
    default_issuer: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=400)
    max_associations: int = Field(default=2, ge=1, le=64, description="Forwarding jobs to it that may run at once.")


class EchoResult(BaseModel):
    """The outcome of a C-ECHO."""

    success: bool
    address: str
    reason: str = ""


@router.get("", summary="List the nodes")
async def list_nodes(
    request: Request, caller: Annotated[Principal, Depends(require(Permission.READ))]
) -> list[NodeModel]:
    return [NodeModel(**asdict(n)) for n in await run_in_threadpool(services(request).nodes.all)]


@router.get("/{name}", summary="Show a node")
async def get_node(
    name: str, request: Request, caller: Annotated[Principal, Depends(require(Permission.READ))]
) -> NodeModel:
    return NodeModel(**asdict(await run_in_threadpool(services(request).nodes.get, name)))


@router.post("", summary="Add a node", status_code=201)
async def add_node(
    body: NodeModel, request: Request, caller: Annotated[Principal, Depends(require(Permission.MANAGE_NODES))]
) -> NodeModel:
    node = await run_in_threadpool(services(request).nodes.add, Node(**body.model_dump()), caller.actor)
    return NodeModel(**asdict(node))


@router.put("/{name}", summary="Change a node")
async def update_node(
    name: str,
    body: NodeModel,
    request: Request,
    caller: Annotated[Principal, Depends(require(Permission.MANAGE_NODES))],
) -> NodeModel:
    """Replaces every field of the node (its name included); effective at the next association."""
    node = await run_in_threadpool(services(request).nodes.update, name, Node(**body.model_dump()), caller.actor)
    return NodeModel(**asdict(node))


@router.delete("/{name}", summary="Remove a node", status_code=204)
async def remove_node(
    name: str, request: Request, caller: Annotated[Principal, Depends(require(Permission.MANAGE_NODES))]
) -> None:
    await run_in_threadpool(services(request).nodes.remove, name, caller.actor)


@router.post("/{name}/echo", summary="C-ECHO a node")
async def echo_node(
    name: str, request: Request, caller: Annotated[Principal, Depends(require(Permission.ECHO))]
) -> EchoResult:
    """Success, or the reason of the failure in words an administrator understands."""
    network = services(request).network
    address = await run_in_threadpool(network.address, name)
    try:
        await run_in_threadpool(network.echo, name)
    except PeerError as exc:
        return EchoResult(success=False, address=str(address), reason=exc.reason)
    return EchoResult(success=True, address=str(address))
