"""schemathesis over the server's published OpenAPI document, in process (ASGI), on the fake
model: every operation, schema-valid and schema-breaking requests. `model` is an enum of the
served names, so generated requests reach the schemes.

Checks: every default check of schemathesis (no 5xx, status codes and content types the
document lists, responses that match their schemas, schema-breaking requests refused, ...)
except `positive_data_acceptance`: a request can be schema-valid and still meaningless (a
conversation that ends on the system's turn, a scheme spec that does not parse, a role no
scheme asks), and JSON Schema cannot say so; those get a 400 naming the field.

A bounded, derandomized run here (the same SCHEMATHESIS_EXAMPLES examples per operation each
time, default 60, so CI is repeatable); the larger, random run whose figures docs/serve.md
quotes is `benchmarks/serve_hardening.py`.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from ponder.models.fake import ScriptedModel  # noqa: E402
from ponder.serve.app import create_app  # noqa: E402
from ponder.tasks import get_task  # noqa: E402

APP = create_app({"fake": ScriptedModel(["Think.\n\nSo \\boxed{42}.", "No idea."]),
                  "other": ScriptedModel(["So \\boxed{7}."])},
                 get_task("math").problem, max_concurrency=2, max_queue=8)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
STATUSES: Counter[int] = Counter()
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "60"))


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_server_keeps_to_its_schema(case: schemathesis.Case) -> None:
    response = case.call()
    STATUSES[response.status_code] += 1
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def test_the_run_reached_the_schemes() -> None:
    """Runs after the one above (file order): generated requests got answers, not only errors."""
    if not STATUSES:
        pytest.skip("run with the test above")
    assert STATUSES[200] > 0 and not any(status >= 500 for status in STATUSES)
