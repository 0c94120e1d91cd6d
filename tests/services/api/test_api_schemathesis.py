"""Property-based test of the API against its own OpenAPI description (schemathesis): no input it generates,
valid or not, makes a 5xx, and every response matches the documented status codes, headers and schemas.

Each operation gets positive (schema-conforming) and negative (schema-violating) cases, on both stores
(PostgreSQL refuses some strings SQLite takes), with the standard data loaded and the bearer token sent, so the
mutating endpoints are exercised past their auth check (schemathesis' ``ignored_auth`` check also calls them
without it). The run's summary goes to ``test-artifacts/schemathesis-<store>.txt``.

schemathesis' own pytest loader does not run under pytest 9 (it reads ``Function._nodeid``), so the cases are
drawn here with its Hypothesis strategies, one operation and generation mode at a time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from services.api import create_app

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
EXAMPLES_PER_MODE = 30


def fuzz(operation, mode: GenerationMode, seen: Counter, auth: dict[str, str]) -> None:
    """Call one operation with generated cases of one mode, counting status codes; raises what the checks find."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call(headers=auth)
        seen[response.status_code] += 1
        case.validate_response(response, headers=auth)

    check()


def test_api_conforms_to_its_openapi_description(api_settings, engine, standard, topics, auth, database_url):
    app = create_app(api_settings, engine=engine, job_kinds={"retrain": "api_test_retrain"})
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    statuses: dict[str, Counter] = {}
    failures: dict[str, str] = {}
    unviolable: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        seen = statuses.setdefault(operation.label, Counter())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, seen, auth)
            except Unsatisfiable:
                # Nothing to violate: no parameters, or only path parameters (a URL holds nothing but strings).
                assert mode is GenerationMode.NEGATIVE, operation.label
                unviolable.append(operation.label)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, report them all
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    lines = [
        f"schemathesis {schemathesis.SCHEMATHESIS_VERSION}, {len(operations)} operations, "
        f"up to {EXAMPLES_PER_MODE} positive and {EXAMPLES_PER_MODE} negative cases each, store {kind}"
    ]
    for label, counts in sorted(statuses.items()):
        lines.append(
            f"  {label}: {sum(counts.values())} calls, "
            + ", ".join(f"{code}x{n}" for code, n in sorted(counts.items()))
        )
    server_errors = sum(n for counts in statuses.values() for code, n in counts.items() if code >= 500)
    lines.append(f"no schema-violating case exists for: {', '.join(unviolable) or 'none'}")
    lines.append(f"5xx responses: {server_errors}; failed checks: {len(failures)}")
    lines += [f"FAILED {name}:\n{message}" for name, message in failures.items()]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"schemathesis-{kind}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert server_errors == 0 and not failures, "\n".join(lines)
