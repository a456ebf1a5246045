"""schemathesis fuzzes every operation of the OpenAPI document, as an administrator, against a
real server: whatever it sends, the answer is never a server error (5xx)."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from conftest import ServerProcess
from web import accounts_of

EXAMPLES_PER_OPERATION = 20
# a fuzzed folder migration that named an existing folder ("/") would really import it:
# its refusals are tested with chosen input in test_migration.py instead
NOT_FUZZED = {("POST", "/api/migrations/from-folder")}


def test_no_operation_answers_a_server_error(sqlite_server: ServerProcess) -> None:
    headers = accounts_of(sqlite_server)["admin"].bearer
    document = httpx.get(sqlite_server.base_url + "/api/openapi.json", headers=headers, timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=sqlite_server.base_url)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            response = case.call(headers=headers, timeout=30)
            case.validate_response(response, checks=(not_a_server_error,))

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations >= 40
    assert not failures, "\n\n".join(failures)
    assert httpx.get(sqlite_server.base_url + "/health", timeout=10).status_code == 200
