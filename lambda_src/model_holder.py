"""The model's lifecycle in a running function: load once, remember why not, retry later.

A `ModelHolder` loads its location (at init, or on the first request that needs it),
keeps the `Classifier` once the load succeeds, and after a failure keeps the
reason and refuses to try again until `retry_seconds` have passed, so a model
published after the deploy is picked up without redeploying. Thread-safe: one load
at a time, and nobody waits on a load in progress longer than `load_wait_s` (the
bound on one store call), so no store fault holds a request past it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from aws_lambda_powertools.metrics import MetricUnit

from lambda_src.contract import Metric, ModelEngine
from lambda_src.engines import Classifier, load_classifier
from lambda_src.errors import ModelArtifactError, ModelUnavailable, UnavailableReason
from lambda_src.model_store import STORE_CALL_BOUND_S, ModelLocation, ModelStore
from lambda_src.settings import RuntimeSettings
from lambda_src.telemetry import Telemetry


class ModelHolder:
    """One model location, its classifier once loaded, or why it is not and when to try again."""

    def __init__(
        self,
        location: ModelLocation | None,
        *,
        settings: RuntimeSettings,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.monotonic,
        configuration_error: str | None = None,
        store: ModelStore | None = None,
    ) -> None:
        if location is None and configuration_error is None:
            raise ValueError("give a model location, or the configuration error that prevents one")
        self.location = location
        self.store = store  # None: the loader opens the location's store itself
        self.settings = settings
        self.telemetry = telemetry
        self.configuration_error = configuration_error
        self._clock = clock
        self._lock = threading.Lock()
        self.load_wait_s = STORE_CALL_BOUND_S
        self._classifier: Classifier | None = None
        self._failure = ModelUnavailable(UnavailableReason.LOADING, "the model has not been loaded yet")
        self._next_attempt_at = -math.inf

    @property
    def classifier(self) -> Classifier | None:
        """The loaded model's classifier, or None while it cannot be served."""
        return self._classifier

    def load(self, init_phases_ms: Mapping[str, float] | None = None) -> bool:
        """Load now unless loaded, ignoring the retry window; True if the model can be served."""
        with self._lock:
            if self._classifier is None:
                self._attempt_load(init_phases_ms or {})
            return self._classifier is not None

    def get(self, *, wait: bool = True) -> Classifier:
        """The classifier, loading it if the retry window allows; ModelUnavailable says why not.

        While another thread loads, wait at most `load_wait_s` for it (not at all with
        `wait=False`), then give up: 503 loading.
        """
        classifier = self._classifier
        if classifier is not None:
            return classifier
        if not self._lock.acquire(timeout=self.load_wait_s if wait else 0):
            raise ModelUnavailable(UnavailableReason.LOADING, "another request is loading the model")
        try:
            if self._classifier is None and self._clock() >= self._next_attempt_at:
                self._attempt_load({})
            if self._classifier is None:
                raise ModelUnavailable(self._failure.reason, self._failure.detail)
            return self._classifier
        finally:
            self._lock.release()

    def seconds_to_next_attempt(self) -> int:
        return max(1, math.ceil(self._next_attempt_at - self._clock()))

    def _attempt_load(self, init_phases_ms: Mapping[str, float]) -> None:
        """One load attempt; the caller holds the lock."""
        self._next_attempt_at = self._clock() + self.settings.model_retry_seconds
        started = time.perf_counter()
        if self.location is None:
            failure = ModelUnavailable(UnavailableReason.MISCONFIGURED, str(self.configuration_error))
            self._record_failure(failure, init_phases_ms, exc_info=False)
            return
        try:
            classifier = load_classifier(self.location, settings=self.settings, store=self.store)
        except ModelArtifactError as error:
            self._record_failure(ModelUnavailable(error.reason, str(error)), init_phases_ms, exc_info=False)
        except Exception as error:
            detail = f"unexpected {type(error).__name__} while loading: {error}"
            self._record_failure(
                ModelUnavailable(UnavailableReason.LOAD_ERROR, detail), init_phases_ms, exc_info=True
            )
        else:
            self._classifier = classifier
            total_ms = (time.perf_counter() - started) * 1000
            manifest = classifier.model.manifest
            engine = self.settings.engine
            threads_key = "torch_threads" if engine is ModelEngine.TORCH else "onnxruntime_threads"
            self.telemetry.logger.info(
                "model loaded",
                extra={
                    "model_name": manifest.model_name,
                    "model_version": manifest.version,
                    "architecture": manifest.architecture,
                    "num_classes": manifest.num_classes,
                    "engine": engine.value,
                    threads_key: classifier.threads,
                    "phases_ms": {**init_phases_ms, **classifier.model.phases_ms},
                    "load_ms": round(total_ms, 1),
                },
            )
            self.telemetry.put_metrics({Metric.MODEL_LOAD_DURATION: (MetricUnit.Milliseconds, total_ms)})

    def _record_failure(
        self, failure: ModelUnavailable, init_phases_ms: Mapping[str, float], *, exc_info: bool
    ) -> None:
        self._failure = failure
        location = self.location
        self.telemetry.logger.error(
            "model load failed",
            exc_info=exc_info,
            extra={
                "model_name": location.model_name if location else None,
                "model_version": location.version if location else None,
                "reason": failure.detail,
                "reason_code": failure.reason,
                "retry_in_s": self.settings.model_retry_seconds,
                "phases_ms": dict(init_phases_ms),
            },
        )
        self.telemetry.put_metrics({Metric.MODEL_LOAD_FAILURES: (MetricUnit.Count, 1)})
