"""The batch function's entry point, `lambda_src.batch_handler.lambda_handler` (the image's CMD override).

Step Functions sends it two kinds of events (stacks/batch_inference.py):

    {"resolve_model_version": "latest" | "<version>"}   once per job, before the Distributed Map
        -> {"name": "<model>", "version": "<published version>"}
    {"Items": [...], "BatchInput": {"bucket", "model_version", "top_k"}}   once per batch
        -> one result line per item (lambda_src/batch.py)

The model is loaded on the first batch, once per execution environment, for the version the
job resolved; the store and model name come from the same environment as the API function's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

# First of all: Powertools reads some of its variables when imported and raises on a bad value.
from lambda_src.settings import correct_powertools_environment

correct_powertools_environment()

from lambda_src.engines import import_engine  # noqa: E402
from lambda_src.lean_imports import without_dynamo  # noqa: E402
from lambda_src.model_store import ModelLocation, bounded_s3_client  # noqa: E402
from lambda_src.settings import RuntimeSettings  # noqa: E402
from lambda_src.telemetry import Telemetry  # noqa: E402

# As in the API's handler: torchvision without torch._dynamo, which no classifier runs.
with without_dynamo():
    from lambda_src.batch import (
        BatchInput,
        BatchWorker,
        ModelCache,
        S3Images,
        is_image_key,
        item_key,
        reading_deadline,
    )

_location = ModelLocation.from_env()
_settings = RuntimeSettings.from_env()
# The chosen engine's modules now, as the API's handler imports them: init pays for them once, and
# a package the image lacks fails init instead of the job's first batch.
import_engine(_settings.engine)
worker = BatchWorker(ModelCache(_location.store_uri, _location.model_name, settings=_settings))
_logger = Telemetry.from_env().logger
# Bounded as every S3 call of the runtime: a stalled read fails its image's line, not the batch.
_s3 = bounded_s3_client()


def lambda_handler(event: object, context: object) -> Any:
    """A job's version resolution, or one Distributed Map batch; anything else is refused."""
    if isinstance(event, Mapping) and "resolve_model_version" in event:
        version = worker.models.resolve(str(event["resolve_model_version"]))
        return {"name": worker.models.model_name, "version": version}
    if isinstance(event, Mapping) and "Items" in event:
        return classify_batch(event, context)
    raise ValueError(
        "expected a Distributed Map batch ({'Items', 'BatchInput'}) or {'resolve_model_version'}"
    )


def classify_batch(event: Mapping[str, Any], context: object = None) -> list[dict[str, Any]]:
    """One result line per image item of the batch, within the invocation's time (`context`'s)."""
    batch_input = BatchInput.from_event(event.get("BatchInput"))
    items = event["Items"]
    if not isinstance(items, list):
        raise ValueError("Items must be a list")
    keys = [key for key in map(item_key, items) if is_image_key(key)]
    started = time.perf_counter()
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    deadline = reading_deadline(remaining_ms() / 1000) if callable(remaining_ms) else None
    lines = worker.classify(
        S3Images(batch_input.bucket, _s3, deadline),
        keys,
        version=batch_input.model_version,
        top_k=batch_input.top_k,
    )
    _logger.info(
        "batch",
        extra={
            "images": len(lines),
            "errors": sum("error" in line for line in lines),
            "model_version": batch_input.model_version,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return lines
