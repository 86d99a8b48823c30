"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis), with a bounded number of
examples per operation: no 5xx, and every response matches the documented schema."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from tests.api.conftest import Server

EXAMPLES = 8
# Server errors, schema conformance of every answer, documented status codes and content types. Whether schema-valid
# data is accepted is left out: the schema cannot express every rule (start before end, deliverable-looking email).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
EXCLUDED = [checks.positive_data_acceptance]


def test_api_never_fails_and_answers_as_documented(api_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{api_server.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api_server.operator_key}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50

    calls = 0
    # Each operation with data it accepts (positive) and with data its schema forbids (negative): the latter must get
    # a documented 4xx with the JSON error shape, never a 5xx.
    for operation, mode in [
        (op, mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=headers, checks=CHECKS, excluded_checks=EXCLUDED)

        try:
            exercise()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid input to send
        except (Exception, BaseExceptionGroup) as error:  # every operation's failure, reported together
            failures[f"{operation.label} ({mode.value})"] = str(error)[:1500]
    assert calls >= len(operations) * 2
    assert not failures, "\n\n".join(f"{label}:\n{message}" for label, message in failures.items())


def test_linked_operations_never_fail_and_answer_as_documented(api_server: Server) -> None:
    """Stateful fuzzing next to the per-operation runs: sequences of calls in which later calls may use what earlier
    ones returned (the links schemathesis infers from the OpenAPI document), so the server is exercised in the
    states earlier calls leave it in. Same checks as above, on every step."""
    schema = schemathesis.openapi.from_url(f"{api_server.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api_server.operator_key}"}
    steps: list[str] = []

    class LinkedCalls(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # The generated case may carry a random bearer token of its own (the security scheme); ours wins.
            case.headers = {**(case.headers or {}), **headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            steps.append(f"{case.operation.label} -> {response.status_code}")
            case.validate_response(response, checks=CHECKS, excluded_checks=EXCLUDED, transport_kwargs=kwargs)

    LinkedCalls.run(
        settings=settings(
            max_examples=20,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
    )
    # Sequences of several calls ran, over many operations.
    assert len(steps) >= 40
    assert len({step.split(" -> ")[0] for step in steps}) >= 20
