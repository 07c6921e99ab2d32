"""The inference service: one model behind the HTTP API, with its logs and metrics.

The Lambda handler module makes one `InferenceService` at init; the tests and the
local endpoint can make their own for any `ModelLocation`. A service answers every
event: when the model cannot be loaded, `/health` and `/predict` say why with a 503,
and a later request tries again (at most every `model_retry_seconds`), so a model
published after the deploy is picked up without redeploying. `handle` may be called
from several threads at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambda_src.api_gateway import ApiRequest, error_response, json_response, parse_event
from lambda_src.errors import (
    ApiError,
    MethodNotAllowed,
    ModelArtifactError,
    ModelUnavailable,
    NotFound,
)
from lambda_src.images import decode_image
from lambda_src.loader import LoadedModel, load_model
from lambda_src.model_store import ModelLocation
from lambda_src.predict_request import parse_predict_request
from lambda_src.predictor import Predictor
from lambda_src.settings import RuntimeSettings
from lambda_src.telemetry import Telemetry
from lambda_src.timing import PhaseTimer

ROUTES = {"/predict": "POST", "/health": "GET"}  # path -> the one method it accepts


class InferenceService:
    """Serves one model location; loads it once, retries after failures, answers proxy events."""

    def __init__(
        self,
        location: ModelLocation | None,
        *,
        settings: RuntimeSettings | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.monotonic,
        configuration_error: str | None = None,
    ) -> None:
        if location is None and configuration_error is None:
            raise ValueError("give a model location, or the configuration error that prevents one")
        self.location = location
        self.settings = settings if settings is not None else RuntimeSettings()
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.configuration_error = configuration_error
        self._clock = clock
        self._load_lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._load_failure = "the model has not been loaded yet"
        self._next_attempt_at = -math.inf
        self._cold_start = True

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, telemetry: Telemetry | None = None
    ) -> InferenceService:
        """A service configured by the function's environment; a bad setting becomes its 503 reason."""
        telemetry = telemetry if telemetry is not None else Telemetry.from_env(environ)
        try:
            settings = RuntimeSettings.from_env(environ)
            location = ModelLocation.from_env(dict(environ) if environ is not None else None)
        except ValueError as error:
            return cls(
                None, telemetry=telemetry, configuration_error=f"the function is misconfigured: {error}"
            )
        return cls(location, settings=settings, telemetry=telemetry)

    @property
    def model(self) -> LoadedModel | None:
        """The loaded model, or None while it cannot be served."""
        predictor = self._predictor
        return predictor.model if predictor is not None else None

    def load(self, *, init_phases_ms: Mapping[str, float] | None = None) -> bool:
        """Load the model now unless it is loaded (the handler calls this at init); True if it can serve."""
        with self._load_lock:
            if self._predictor is None:
                self._attempt_load(init_phases_ms or {})
            return self._predictor is not None

    def handle(self, event: object, context: object = None) -> dict[str, Any]:
        """Answer one API Gateway REST proxy event with a proxy response; never raises."""
        started = time.perf_counter()
        timer = PhaseTimer()
        record: dict[str, Any] = {"request_id": _aws_request_id(context)} if context is not None else {}
        request: ApiRequest | None = None
        try:
            request = parse_event(event)
            record.update(api_request_id=request.request_id, method=request.method, route=request.path[:200])
            response = self._route(request, timer, record)
        except ApiError as error:
            response = error_response(error, self._error_headers(error, request))
            record.update(error_code=error.code, error=error.message[:500])
        except Exception:
            # A bug, not the client's doing: the trace goes to the log, never to the client.
            self.telemetry.logger.exception("unexpected error while handling a request", extra=record)
            request_id = record.get("api_request_id") or record.get("request_id", "")
            response = error_response(
                ApiError(f"internal error; the function's logs have the details (request id {request_id!r})")
            )
        if self.settings.cors_allow_origin:
            response["headers"]["Access-Control-Allow-Origin"] = self.settings.cors_allow_origin
        record.update(status=response["statusCode"], total_ms=(time.perf_counter() - started) * 1000)
        self._report_request(record, timer)
        return response

    def _route(self, request: ApiRequest, timer: PhaseTimer, record: dict[str, Any]) -> dict[str, Any]:
        allowed = ROUTES.get(request.path)
        if allowed is None:
            routes = " and ".join(f"{method} {path}" for path, method in ROUTES.items())
            raise NotFound(f"there is no route {request.path!r:.100}; this API has {routes}")
        if request.method != allowed:
            raise MethodNotAllowed(f"{request.path} accepts {allowed} only, not {request.method:.20}")
        predictor = self._predictor_or_unavailable()
        manifest = predictor.model.manifest
        record.update(model_name=manifest.model_name, model_version=manifest.version)
        if request.path == "/health":
            return self._health(predictor)
        return self._predict(predictor, request, timer, record)

    def _health(self, predictor: Predictor) -> dict[str, Any]:
        manifest = predictor.model.manifest
        model = {
            **_model_id(predictor),
            "architecture": manifest.architecture,
            "num_classes": manifest.num_classes,
        }
        return json_response(200, {"status": "ok", "model": model})

    def _predict(
        self, predictor: Predictor, request: ApiRequest, timer: PhaseTimer, record: dict[str, Any]
    ) -> dict[str, Any]:
        with timer.phase("decode"):
            parsed = parse_predict_request(
                request,
                max_batch_size=self.settings.max_batch_size,
                max_body_bytes=self.settings.max_body_bytes,
            )
        record.update(images=len(parsed.images), top_k=parsed.top_k)
        resize = predictor.model.manifest.preprocessing.resize
        inputs = []
        for item in parsed.images:  # one at a time: only the small input tensors are kept
            with timer.phase("decode"):
                image = decode_image(
                    item.data, max_pixels=self.settings.max_image_pixels, min_side=resize, what=item.name
                )
            with timer.phase("preprocess"):
                inputs.append(predictor.preprocess(image))
        with timer.phase("inference"):
            ranked = predictor.predict(inputs, parsed.top_k)
        payload = {
            "model": _model_id(predictor),
            "top_k": min(parsed.top_k, predictor.num_classes),
            "results": [{"predictions": [p.to_dict() for p in predictions]} for predictions in ranked],
        }
        return json_response(200, payload)

    def _predictor_or_unavailable(self) -> Predictor:
        predictor = self._predictor
        if predictor is not None:
            return predictor
        with self._load_lock:
            if self._predictor is None and self._clock() >= self._next_attempt_at:
                self._attempt_load({})
            if self._predictor is None:
                raise ModelUnavailable(
                    f"the model cannot be served: {self._load_failure} "
                    f"(next load attempt in {self._seconds_to_next_attempt()} s)"
                )
            return self._predictor

    def _attempt_load(self, init_phases_ms: Mapping[str, float]) -> None:
        """One load attempt; the caller holds the load lock."""
        self._next_attempt_at = self._clock() + self.settings.model_retry_seconds
        started = time.perf_counter()
        try:
            if self.location is None:
                raise ModelArtifactError(str(self.configuration_error))
            loaded = load_model(self.location, torch_threads=self.settings.torch_threads)
        except ModelArtifactError as error:
            self._record_load_failure(str(error), init_phases_ms, exc_info=False)
        except Exception as error:
            self._record_load_failure(
                f"unexpected {type(error).__name__} while loading; see the function's logs",
                init_phases_ms,
                exc_info=True,
            )
        else:
            self._predictor = Predictor(loaded)
            total_ms = (time.perf_counter() - started) * 1000
            manifest = loaded.manifest
            self.telemetry.logger.info(
                "model loaded",
                extra={
                    "model_name": manifest.model_name,
                    "model_version": manifest.version,
                    "architecture": manifest.architecture,
                    "num_classes": manifest.num_classes,
                    "torch_threads": loaded.torch_threads,
                    "phases_ms": {**init_phases_ms, **loaded.phases_ms},
                    "load_ms": round(total_ms, 1),
                },
            )
            self.telemetry.put_metrics({"ModelLoadDuration": (MetricUnit.Milliseconds, total_ms)})

    def _record_load_failure(
        self, reason: str, init_phases_ms: Mapping[str, float], *, exc_info: bool
    ) -> None:
        self._load_failure = reason
        location = self.location
        self.telemetry.logger.error(
            "model load failed",
            exc_info=exc_info,
            extra={
                "model_name": location.model_name if location else None,
                "model_version": location.version if location else None,
                "reason": reason,
                "retry_in_s": self.settings.model_retry_seconds,
                "phases_ms": dict(init_phases_ms),
            },
        )
        self.telemetry.put_metrics({"ModelLoadFailures": (MetricUnit.Count, 1)})

    def _seconds_to_next_attempt(self) -> int:
        return max(1, math.ceil(self._next_attempt_at - self._clock()))

    def _error_headers(self, error: ApiError, request: ApiRequest | None) -> dict[str, str]:
        if isinstance(error, ModelUnavailable):
            return {"Retry-After": str(self._seconds_to_next_attempt())}
        if isinstance(error, MethodNotAllowed) and request is not None:
            return {"Allow": ROUTES[request.path]}
        return {}

    def _report_request(self, record: dict[str, Any], timer: PhaseTimer) -> None:
        """One log line and one metrics line per request."""
        cold_start, self._cold_start = self._cold_start, False
        status = record["status"]
        latency = {"total": round(record.pop("total_ms"), 1), **timer.rounded()}
        log = self.telemetry.logger.info if status < 500 else self.telemetry.logger.error
        log("request", extra={**record, "cold_start": cold_start, "latency_ms": latency})
        metrics: dict[str, tuple[MetricUnit, float]] = {
            "Latency": (MetricUnit.Milliseconds, latency["total"]),
            "ClientErrors": (MetricUnit.Count, int(400 <= status < 500)),
            "ServerErrors": (MetricUnit.Count, int(status >= 500)),
        }
        if status == 200 and "images" in record:
            metrics["ImagesClassified"] = (MetricUnit.Count, record["images"])
            for phase, name in (
                ("decode", "Decode"),
                ("preprocess", "Preprocess"),
                ("inference", "Inference"),
            ):
                metrics[f"{name}Latency"] = (MetricUnit.Milliseconds, latency.get(phase, 0.0))
        self.telemetry.put_metrics(metrics)


def _model_id(predictor: Predictor) -> dict[str, str]:
    manifest = predictor.model.manifest
    return {"name": manifest.model_name, "version": manifest.version}


def _aws_request_id(context: object) -> str:
    request_id = getattr(context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) else ""
