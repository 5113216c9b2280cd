"""API fuzzing: schemathesis draws requests from /openapi.json (bodies, paths, headers) against the
app, 30 schema-valid and 20 schema-violating cases per operation (~300 in all; half of them
named after the served model, so they reach it): no 5xx, and every response matches the schema (status
codes, content types, bodies). Cases are drawn with hypothesis from each operation's strategy."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from gridcast.serve.app import create_app
from gridcast.serve.registry import load_models
from serve_model import fitted_model

POSITIVE, NEGATIVE = 30, 20  # cases per operation: schema-valid, and schema-violating ones
# Every response check but "schema-valid data is accepted": whether a point's kind fits the model's
# grid or its times increase is the model's to judge, not the schema's (a 422 naming the field).
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    app = create_app(load_models([f"bus14={fitted_model(tmp_path_factory)}"]))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_errors_and_responses_match_the_schema(schema):
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    seen: dict[str, dict[int, int]] = {}

    for operation, mode, n in [(op, mode, n) for op in operations
                               for mode, n in ((GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE))]:
        label = f"{operation.method.upper()} {operation.path}"
        if mode is GenerationMode.NEGATIVE and not (operation.body or operation.path_parameters):
            continue  # nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=mode), served=st.booleans())
        @settings(max_examples=n, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case, served):
            if served and "name" in (case.path_parameters or {}):
                case.path_parameters["name"] = "bus14"  # half the cases reach the model itself
            response = case.call()
            counts = seen.setdefault(label, {})
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            assert response.status_code < 500, (label, case.path_parameters, case.body, response.text)
            assert "Traceback" not in response.text
            case.validate_response(response, checks=CHECKS)

        check()
    total = sum(sum(c.values()) for c in seen.values())
    print(f"fuzzed {total} cases: {seen}")
    assert total >= 250, seen
    # the fuzzer reached the model, not only the validation errors
    predict = seen["POST /v1/models/{name}/predict"]
    assert predict.get(200) and predict.get(422) and predict.get(404), predict
    assert seen["POST /v1/models/{name}/tracks/{track_id}/points"].get(200), seen
