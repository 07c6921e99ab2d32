"""The Lambda entry point, `lambda_src.handler.lambda_handler` (the image's CMD).

The model is loaded here, at init, once per execution environment, from the
function's environment (MODEL_STORE, MODEL_NAME, MODEL_VERSION; see settings.py and
telemetry.py for the tunables). The handler itself only passes each event on.
"""

import gc
import time

_IMPORTS_STARTED = time.perf_counter()
# Init creates some 350,000 long-lived objects (torch, torchvision); collecting garbage while
# they are being made only rescans them, about 0.4 s of a cold start. Freezing them after
# init also keeps every later collection from rescanning them during requests.
gc.disable()
try:
    # Imported after the clock starts on purpose: importing torch is most of a cold start.
    from lambda_src.service import InferenceService

    service = InferenceService.from_env()
    service.load(init_phases_ms={"imports": round((time.perf_counter() - _IMPORTS_STARTED) * 1000, 1)})
finally:
    gc.freeze()
    gc.enable()


def lambda_handler(event: object, context: object) -> dict:
    """API Gateway REST proxy event in, proxy response out."""
    return service.handle(event, context)
