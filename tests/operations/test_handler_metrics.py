"""The metrics and log fields that the alarms and dashboard (stacks/monitoring.py) read are the handler's."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from lambda_src.contract import DEPLOYED_SERVICE_NAME, Metric
from lambda_src.model_store import ModelLocation
from lambda_src.service import InferenceService
from lambda_src.telemetry import Telemetry
from local_endpoint.lambda_context import new_log_stream_name
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_operations import dashboard_body
from tests.operations.conftest import MODEL_NAME
from tests.support.events import api_gateway_event
from tests.support.telemetry import CapturedTelemetry

NAMESPACE = "PyTorchInference"


def written_metrics(location: ModelLocation) -> dict[str, list[float]]:
    """Load the model at `location`, answer GET /health once; metric name -> values written as EMF."""
    stream = io.StringIO()
    telemetry = Telemetry(service=DEPLOYED_SERVICE_NAME, namespace=NAMESPACE, stream=stream)
    service = InferenceService(location, telemetry=telemetry)
    service.load()
    service.handle(api_gateway_event("GET", "/health"))
    values: dict[str, list[float]] = {}
    for line in stream.getvalue().splitlines():
        record: dict[str, Any] = json.loads(line)
        if "_aws" not in record:
            continue  # a log line, not metrics
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [["service"]] and record["service"] == DEPLOYED_SERVICE_NAME
        for metric in directive["Metrics"]:
            values.setdefault(metric["Name"], []).extend(record[metric["Name"]])
    return values


def test_a_served_model_writes_load_duration_latency_and_no_server_error(model_store: Path) -> None:
    values = written_metrics(ModelLocation(str(model_store), MODEL_NAME))
    assert len(values[Metric.MODEL_LOAD_DURATION]) == 1
    assert values[Metric.MODEL_LOAD_DURATION][0] > 0
    assert len(values[Metric.LATENCY]) == 1
    assert values[Metric.SERVER_ERRORS] == [0.0]
    assert Metric.MODEL_LOAD_FAILURES not in values


def test_a_missing_model_writes_load_failures_and_a_server_error(tmp_path: Path) -> None:
    values = written_metrics(ModelLocation(str(tmp_path), MODEL_NAME))
    assert values[Metric.MODEL_LOAD_FAILURES] == [1.0]  # the health request waits for the retry delay
    assert values[Metric.SERVER_ERRORS] == [1.0]  # /health answered 503
    assert Metric.MODEL_LOAD_DURATION not in values


def test_the_dashboards_served_model_query_finds_its_fields_in_the_handlers_request_lines(
    model_store: Path, default_synth: Synthesized
) -> None:
    # Given the Logs Insights query of the dashboard's "model version served" table
    widgets = {widget["properties"]["title"]: widget for widget in dashboard_body(default_synth)["widgets"]}
    query = widgets["Model version served, by function version"]["properties"]["query"]
    filter_line = re.search(r"\| filter (.+?)\s*(?:\||$)", query, re.M)
    parse_line = re.search(r"\| parse @logStream /(.+)/", query)
    stats_line = re.search(r"\| stats .+ by (.+?)\s*(?:\||$)", query, re.M)
    assert filter_line and parse_line and stats_line, query
    # When the handler serves a request
    telemetry = CapturedTelemetry()
    service = InferenceService(ModelLocation(str(model_store), MODEL_NAME), telemetry=telemetry)
    service.handle(api_gateway_event("GET", "/health"))
    (request,) = telemetry.logs("request")
    # Then its request line passes the filter: each `field = "value"` and `ispresent(field)` holds
    for field, value in re.findall(r'(\w+) = "([^"]*)"', filter_line.group(1)):
        assert request.get(field) == value, field
    for field in re.findall(r"ispresent\((\w+)\)", filter_line.group(1)):
        assert field in request, field
    # and the parse finds the function version in Lambda's log stream names, $LATEST or a published one
    pattern = re.compile(parse_line.group(1).replace("(?<", "(?P<"))
    parsed = [pattern.search(name) for name in (new_log_stream_name(), "2026/01/01/[7]0123456789abcdef")]
    assert [match and match.group("function_version") for match in parsed] == ["$LATEST", "7"]
    # and every field it groups by is there, from the line or from the parse
    for field in (name.strip() for name in stats_line.group(1).split(",")):
        assert field in request or field in pattern.groupindex, field
    assert (request["model_name"], request["model_version"]) == (MODEL_NAME, "v1")
