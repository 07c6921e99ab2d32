"""The Lambda entry point, `lambda_src.handler.lambda_handler` (the image's CMD).

The model is loaded here, at init, once per execution environment, from the
function's environment (MODEL_STORE, MODEL_NAME, MODEL_VERSION, MODEL_ENGINE; see settings.py
and telemetry.py for the tunables). The handler itself only passes each event on. Under
SnapStart, the hooks of snapstart.py ready the loaded model for the snapshot and refresh
what each restore must not share.
"""

import contextlib
import gc
import os
import time

_IMPORTS_STARTED = time.perf_counter()
# First of all: Powertools reads some of its variables when imported and raises on a bad value.
from lambda_src.settings import correct_powertools_environment  # noqa: E402 - stdlib only

correct_powertools_environment()
# With an S3 store, the model's objects download while torch is imported below.
from lambda_src.prefetch import prefetch_from_env  # noqa: E402 - torch-free, and first on purpose

_prefetching = prefetch_from_env()
# The imports create some 350,000 long-lived objects (torch, torchvision): collecting garbage
# while they are being made only rescans them, about 0.4 s of a cold start. Frozen once made,
# no later collection rescans them, so collecting what loading the model left behind (the
# tracing that folds batch norms leaves the unfolded network in reference cycles) takes ms.
gc.disable()
try:
    # Imported after the clock starts on purpose: importing torch is most of a cold start.
    # Without torch._dynamo, which torchvision imports for code no classifier runs. Only the
    # chosen engine's packages are imported (the onnxruntime engine's image has no torch).
    from lambda_src.engines import import_engine
    from lambda_src.lean_imports import without_dynamo
    from lambda_src.settings import model_engine

    with without_dynamo():
        from lambda_src.service import InferenceService
        from lambda_src.snapstart import SnapshotLifecycle

        # An unknown MODEL_ENGINE imports nothing more: the service answers 503 misconfigured.
        with contextlib.suppress(ValueError):
            import_engine(model_engine(os.environ))
finally:
    gc.freeze()
    gc.enable()

service = InferenceService.from_env(store=_prefetching)
service.load(init_phases_ms={"imports": round((time.perf_counter() - _IMPORTS_STARTED) * 1000, 1)})
gc.collect()
# With SnapStart the runtime client runs these before the snapshot and after each restore.
SnapshotLifecycle(service, _prefetching).register()


def lambda_handler(event: object, context: object) -> dict:
    """API Gateway REST proxy event in, proxy response out."""
    return service.handle(event, context)
