"""The first part of the cold-start floor: a fresh process that imports torch, nothing else.

    python -m bench.import_torch RESULT_PATH

No serving process can start faster than this; the rest of the floor (building, loading
and running the model once, in process) is timed by `bench.bare_floor`.
"""

import time

STARTED_AT = time.time()

import sys  # noqa: E402

import torch  # noqa: E402, F401

IMPORTED_AT = time.time()

from bench.child import peak_rss_mb, write_result  # noqa: E402

if __name__ == "__main__":
    write_result(
        sys.argv[1], {"started_at": STARTED_AT, "imported_at": IMPORTED_AT, "peak_rss_mb": peak_rss_mb()}
    )
