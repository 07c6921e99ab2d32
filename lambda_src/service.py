"""The inference service: routing, error mapping, logs and metrics around one model.

The Lambda handler module makes one `InferenceService` at init; the tests and the
local endpoint can make their own for any `ModelLocation`. The model's lifecycle is
its `ModelHolder`'s (load, retry window, failure reason) and the request verbs are
its `Classifier`'s (input, predict, output). A service answers every event:
when the model cannot be loaded, `/health` and `/predict` say why with a 503.
`handle` may be called from several threads at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from lambda_src.api_gateway import ApiRequest, error_response, json_response, parse_event
from lambda_src.contract import HEALTH_PATH, PREDICT_PATH, Metric
from lambda_src.engines import Classifier
from lambda_src.errors import ApiError, MethodNotAllowed, ModelUnavailable, NotFound
from lambda_src.model_holder import ModelHolder
from lambda_src.model_store import ModelLocation, ModelStore
from lambda_src.predict_request import parse_predict_request
from lambda_src.settings import RuntimeSettings
from lambda_src.telemetry import Telemetry
from lambda_src.timing import Phase, PhaseTimer

if TYPE_CHECKING:  # the engines' modules: imported when the model loads, only the chosen one's
    from lambda_src.loader import LoadedModel
    from lambda_src.onnx_engine import LoadedOnnxModel

ROUTES = {PREDICT_PATH: "POST", HEALTH_PATH: "GET"}  # path -> the one method it accepts
_PHASE_METRICS = {
    Phase.PARSE: Metric.PARSE_LATENCY,
    Phase.DECODE: Metric.DECODE_LATENCY,
    Phase.PREPROCESS: Metric.PREPROCESS_LATENCY,
    Phase.INFERENCE: Metric.INFERENCE_LATENCY,
}


class InferenceService:
    """Serves one model location: answers proxy events, logs and measures each request."""

    def __init__(
        self,
        location: ModelLocation | None,
        *,
        settings: RuntimeSettings | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.monotonic,
        configuration_error: str | None = None,
        store: ModelStore | None = None,
    ) -> None:
        self.settings = settings if settings is not None else RuntimeSettings()
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.holder = ModelHolder(
            location,
            settings=self.settings,
            telemetry=self.telemetry,
            clock=clock,
            configuration_error=configuration_error,
            store=store,
        )
        self._cold_start = True  # no request answered yet in this environment
        self._restored = False  # and it was restored from a SnapStart snapshot, not initialised
        self._cold_start_lock = threading.Lock()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        telemetry: Telemetry | None = None,
        store: ModelStore | None = None,
    ) -> InferenceService:
        """A service configured by the function's environment; a bad setting becomes its 503 reason.

        `store`, if given, is where the location's objects are read (the handler's prefetching one).
        """
        telemetry = telemetry if telemetry is not None else Telemetry.from_env(environ)
        try:
            settings = RuntimeSettings.from_env(environ)
            location = ModelLocation.from_env(dict(environ) if environ is not None else None)
        except ValueError as error:
            return cls(
                None, telemetry=telemetry, configuration_error=f"the function is misconfigured: {error}"
            )
        return cls(location, settings=settings, telemetry=telemetry, store=store)

    @property
    def location(self) -> ModelLocation | None:
        return self.holder.location

    @property
    def model(self) -> LoadedModel | LoadedOnnxModel | None:
        """The loaded model, or None while it cannot be served."""
        classifier = self.holder.classifier
        return classifier.model if classifier is not None else None

    def load(self, *, init_phases_ms: Mapping[str, float] | None = None) -> bool:
        """Load the model now unless it is loaded (the handler calls this at init); True if it can serve."""
        return self.holder.load(init_phases_ms)

    def mark_restored(self) -> None:
        """This environment was just restored from a snapshot: its first request reports a restore.

        A restore is not an init: that request logs `restored` true and `cold_start` false.
        """
        with self._cold_start_lock:
            self._cold_start = True
            self._restored = True

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
        except ModelUnavailable as error:
            # The caller gets the reason and a short message; the details go to this request's log line.
            retry_s = self.holder.seconds_to_next_attempt()
            message = (
                f"{error.message}; the function's log has the details under request id "
                f"{_logged_request_id(record)!r} (next load attempt in {retry_s} s)"
            )
            response = error_response(error, self._error_headers(error, request), message=message)
            record.update(error_code=error.code, error_reason=error.reason, error=error.detail[:1000])
        except ApiError as error:
            response = error_response(error, self._error_headers(error, request))
            record.update(error_code=error.code, error=error.message[:500])
        except Exception:
            # A bug, not the client's doing: the trace goes to the log, never to the client.
            self.telemetry.logger.exception("unexpected error while handling a request", extra=record)
            response = error_response(
                ApiError(
                    "internal error; the function's logs have the details "
                    f"(request id {_logged_request_id(record)!r})"
                )
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
        classifier = self.holder.get(wait=request.path != HEALTH_PATH)  # health never waits on a load
        model_id = classifier.model_id
        record.update(model_name=model_id["name"], model_version=model_id["version"])
        if request.path == HEALTH_PATH:
            return json_response(200, classifier.health())
        return self._predict(classifier, request, timer, record)

    def _predict(
        self, classifier: Classifier, request: ApiRequest, timer: PhaseTimer, record: dict[str, Any]
    ) -> dict[str, Any]:
        with timer.phase(Phase.PARSE):
            parsed = parse_predict_request(
                request,
                max_batch_size=self.settings.max_batch_size,
                max_body_bytes=self.settings.max_body_bytes,
            )
        record.update(images=len(parsed.images), top_k=parsed.top_k)
        # One image at a time: only the small input tensors (or arrays, for onnxruntime) are kept.
        inputs: list[Any] = [
            classifier.input(item.data, what=item.name, timer=timer) for item in parsed.images
        ]
        with timer.phase(Phase.INFERENCE):
            ranked = classifier.predict(inputs, parsed.top_k)
        return json_response(200, classifier.output(ranked, parsed.top_k))

    def _error_headers(self, error: ApiError, request: ApiRequest | None) -> dict[str, str]:
        if isinstance(error, ModelUnavailable):
            return {"Retry-After": str(self.holder.seconds_to_next_attempt())}
        if isinstance(error, MethodNotAllowed) and request is not None:
            return {"Allow": ROUTES[request.path]}
        return {}

    def _report_request(self, record: dict[str, Any], timer: PhaseTimer) -> None:
        """One log line and one metrics line per request."""
        with self._cold_start_lock:  # requests run in parallel threads locally: exactly one is first
            first, self._cold_start = self._cold_start, False
            restored = first and self._restored
        status = record["status"]
        latency = {"total": round(record.pop("total_ms"), 1), **timer.rounded()}
        log = self.telemetry.logger.info if status < 500 else self.telemetry.logger.error
        start = {"cold_start": first and not restored, "restored": restored}
        log("request", extra={**record, **start, "latency_ms": latency})
        metrics: dict[str, tuple[MetricUnit, float]] = {
            Metric.LATENCY: (MetricUnit.Milliseconds, latency["total"]),
            Metric.CLIENT_ERRORS: (MetricUnit.Count, int(400 <= status < 500)),
            Metric.SERVER_ERRORS: (MetricUnit.Count, int(status >= 500)),
        }
        if status == 200 and "images" in record:
            metrics[Metric.IMAGES_CLASSIFIED] = (MetricUnit.Count, record["images"])
            for phase, metric in _PHASE_METRICS.items():
                metrics[metric] = (MetricUnit.Milliseconds, latency.get(phase, 0.0))
        self.telemetry.put_metrics(metrics)


def _logged_request_id(record: Mapping[str, Any]) -> str:
    """The id a caller can quote to find this request's log line (API Gateway's, else Lambda's)."""
    return str(record.get("api_request_id") or record.get("request_id", ""))


def _aws_request_id(context: object) -> str:
    request_id = getattr(context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) else ""
