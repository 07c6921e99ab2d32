"""Structured JSON logs and CloudWatch metrics for the runtime, both as lines on stdout.

Logs come from Powertools' `Logger` (one JSON object per line). Metrics are written
in CloudWatch's Embedded Metric Format (EMF), which CloudWatch Logs turns into
metrics with no API calls. Environment (the Powertools conventions):

    POWERTOOLS_SERVICE_NAME       `service` key of every log line and metric dimension (pytorch-inference)
    POWERTOOLS_METRICS_NAMESPACE  CloudWatch namespace of the metrics (PyTorchInference)
    POWERTOOLS_METRICS_DISABLED   "true" writes no metrics (e.g. for a local server)
    AWS_LAMBDA_FUNCTION_VERSION   set by Lambda: every metric is also written with the dimensions
                                  `service` and `function_version` (what rollback alarms watch)
    POWERTOOLS_LOG_LEVEL          DEBUG, INFO (default), WARNING, ERROR; other values: INFO and a warning

Powertools' other variables (POWERTOOLS_DEV, POWERTOOLS_LOGGER_SAMPLE_RATE, ...) are checked
by `settings.correct_powertools_environment`: a value Powertools would raise on is dropped, and
the first Telemetry made from the environment logs a warning naming it.

Safe for concurrent requests: no per-request state lives on shared objects.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from lambda_src import settings
from lambda_src.contract import (
    DEFAULT_METRICS_NAMESPACE,
    DEFAULT_SERVICE_NAME,
    ENV_AWS_LAMBDA_FUNCTION_VERSION,
    ENV_POWERTOOLS_LOG_LEVEL,
    ENV_POWERTOOLS_METRICS_DISABLED,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    METRIC_SERVICE_DIMENSION,
    METRIC_VERSION_DIMENSION,
)

_TRUE = {"1", "true", "yes", "on"}


class Telemetry:
    """A JSON logger plus an EMF metrics writer for one service."""

    def __init__(
        self,
        *,
        service: str = DEFAULT_SERVICE_NAME,
        namespace: str = DEFAULT_METRICS_NAMESPACE,
        stream: TextIO | None = None,
        metrics_enabled: bool = True,
        log_level: str | None = None,
        function_version: str | None = None,
    ) -> None:
        self.service = service
        self.function_version = function_version
        self.namespace = namespace
        self.metrics_enabled = metrics_enabled
        requested = os.environ.get(ENV_POWERTOOLS_LOG_LEVEL, "") if log_level is None else log_level
        level = requested.strip().upper() or "INFO"
        known = level in logging.getLevelNamesMapping()
        # Given a level, Powertools does not read POWERTOOLS_LOG_LEVEL, which raises on an unknown
        # name: at import, that would stop the function, and a bad setting must not.
        self.logger = Logger(service=service, stream=stream, level=level if known else "INFO")
        if not known:
            self.logger.warning(
                f"{ENV_POWERTOOLS_LOG_LEVEL} {requested!r} is not a log level "
                "(DEBUG, INFO, WARNING, ERROR, CRITICAL): logging at INFO",
                extra={"setting": ENV_POWERTOOLS_LOG_LEVEL},
            )
        self._stream = stream
        self._write_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Telemetry:
        """Telemetry as the environment configures it; each setting it cannot use is a warning."""
        if environ is None:  # the process's: corrected in place (the handler does it before imports)
            settings.correct_powertools_environment()
            env: Mapping[str, str] = os.environ
            corrections = list(settings.corrections)
        else:
            env = dict(environ)
            corrections = settings.correct_powertools_environment(env)
        telemetry = cls(
            service=env.get(ENV_POWERTOOLS_SERVICE_NAME) or DEFAULT_SERVICE_NAME,
            namespace=env.get(ENV_POWERTOOLS_METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE,
            metrics_enabled=env.get(ENV_POWERTOOLS_METRICS_DISABLED, "").strip().lower() not in _TRUE,
            log_level=env.get(ENV_POWERTOOLS_LOG_LEVEL, ""),
            function_version=env.get(ENV_AWS_LAMBDA_FUNCTION_VERSION) or None,
        )
        for correction in corrections:
            telemetry.logger.warning(correction.message(), extra={"setting": correction.variable})
        return telemetry

    def put_metrics(self, values: Mapping[str, tuple[MetricUnit, float]]) -> None:
        """Write one EMF line with these metrics (name -> (unit, value)), dimensioned by service."""
        if not self.metrics_enabled or not values:
            return
        metrics = EphemeralMetrics(namespace=self.namespace, service=self.service)
        if self.function_version:
            metrics.add_dimension(name=METRIC_VERSION_DIMENSION, value=self.function_version)
        for name, (unit, value) in values.items():
            metrics.add_metric(name=name, unit=unit, value=value)
        blob = metrics.serialize_metric_set()
        if self.function_version:
            # One line, two dimension sets: the whole service (paging alarms, the dashboard) and
            # this function version (a deployment's rollback alarms).
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                directive["Dimensions"] = [
                    [METRIC_SERVICE_DIMENSION],
                    [METRIC_SERVICE_DIMENSION, METRIC_VERSION_DIMENSION],
                ]
        line = json.dumps(blob, separators=(",", ":"), allow_nan=False)
        stream = self._stream if self._stream is not None else sys.stdout
        with self._write_lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed or broken stdout must not fail the request
                pass
