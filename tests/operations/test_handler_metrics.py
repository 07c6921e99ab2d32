"""The handler metrics the alarms and dashboard use (stacks/monitoring.py) are the ones the handler writes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from lambda_src.contract import DEPLOYED_SERVICE_NAME, Metric
from lambda_src.model_store import ModelLocation
from lambda_src.service import InferenceService
from lambda_src.telemetry import Telemetry
from tests.operations.conftest import MODEL_NAME
from tests.runtime.support import api_gateway_event

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
