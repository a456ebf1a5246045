"""Helpers of the web tests: an account per role, HTTP and DICOMweb clients."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import httpx
from dicomweb_client.api import DICOMwebClient

from conftest import IN_CI, ServerProcess
from openpacs import bootstrap
from openpacs.domain.records import Actor
from openpacs.domain.users import Role
from openpacs.settings import load_settings

ROLES = tuple(str(r) for r in Role)


@dataclass(frozen=True)
class Account:
    """A test user: its name, role, password and an API token."""

    name: str
    role: str
    password: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


_made: dict[str, dict[str, Account]] = {}


def accounts_of(server: ServerProcess) -> dict[str, Account]:
    """One account per role on *server*'s database (created once), by role."""
    key = str(server.data_dir)
    if key not in _made:
        settings = load_settings(None, data_dir=server.data_dir, database_url=server.database_url)
        app = bootstrap.build(settings)
        made: dict[str, Account] = {}
        try:
            for role in Role:
                name, password = f"t-{role}", f"pw-{role}-123456"
                app.users.create(name, role, Actor.system("tests"), password)
                token = app.users.create_token(name, Actor.system("tests"), "tests")
                made[str(role)] = Account(name, str(role), password, token)
        finally:
            app.close()
        _made[key] = made
    return _made[key]


def dicomweb(server: ServerProcess, account: Account, *, basic: bool = False) -> DICOMwebClient:
    """dicomweb-client on the server's DICOMweb, authenticated as *account* (Bearer, or Basic)."""
    url = server.base_url + "/dicom-web"
    if basic:
        from dicomweb_client.session_utils import create_session_from_user_pass

        return DICOMwebClient(url, session=create_session_from_user_pass(account.name, account.password))
    return DICOMwebClient(url, headers=account.bearer)


def http(server: ServerProcess, account: Account | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx client on the server, with *account*'s token."""
    headers = dict(account.bearer) if account else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30, **kwargs)


def chromium_path() -> str | None:
    """Debian's chromium (the browser tests need it; in CI its absence fails the run)."""
    found = shutil.which("chromium")
    if found is None and IN_CI:
        raise AssertionError("chromium is missing: scripts/setup.sh test installs it")
    return found
