"""A serving process from its start to its first successful response, then a few more requests.

    python -m bench.cold HANDLER PHOTO_PATH BATCH_SIZE RESULT_PATH

The model location comes from the environment (MODEL_STORE, MODEL_NAME, MODEL_VERSION)
exactly as on Lambda. The parent times the whole process from spawn; this child
stamps when its Python code started, when init (the handler import) ended and when
the first response came back, and reports init's own phases from the handler's "model
loaded" log line. The extra requests after it make the peak RSS that of a process that
has served single images, JSON and a full batch.
"""

import time

STARTED_AT = time.time()

import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from contextlib import redirect_stdout  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.child import (  # noqa: E402
    files_touched,
    import_handler,
    imported_modules,
    invoke,
    peak_rss_mb,
    write_result,
)
from bench.events import json_image_event, raw_image_event  # noqa: E402

EXTRA_ROUNDS = 3


def main(handler_spec: str, photo_path: str, batch_size: str, result_path: str) -> None:
    photo = Path(photo_path).read_bytes()
    log = io.StringIO()  # the function's log stream: its logger writes to stdout as it is now
    with redirect_stdout(log):
        handler = import_handler(handler_spec)
    initialised_at = time.time()
    invoke(handler, raw_image_event(photo))
    first_response_at = time.time()
    imports_at_first_response = imported_modules()
    touched_at_first_response = files_touched()
    for _ in range(EXTRA_ROUNDS):
        invoke(handler, raw_image_event(photo))
        invoke(handler, json_image_event([photo]))
        invoke(handler, json_image_event([photo] * int(batch_size)))
    write_result(
        result_path,
        {
            "started_at": STARTED_AT,
            "initialised_at": initialised_at,
            "first_response_at": first_response_at,
            "peak_rss_mb": peak_rss_mb(),
            "imported": imports_at_first_response,
            "files_touched": touched_at_first_response,
            "init_phases_ms": init_phases_ms(log.getvalue()),
        },
    )


def init_phases_ms(log: str) -> dict[str, float]:
    """The phases of init the handler logged with "model loaded" (imports, reading, building...)."""
    for line in log.splitlines():
        if line.startswith("{") and '"model loaded"' in line:
            return json.loads(line)["phases_ms"]
    raise RuntimeError(f"the handler logged no 'model loaded' line during init:\n{log[-2000:]}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
