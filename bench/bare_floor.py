"""The bare script: imports torch and torchvision, loads the state dict and runs one forward,
as a user's own script would. Cold starts are compared with it; it also times its in-process
part (build, load, forward), the second half of the floor (see `bench.import_torch`). A timm
model (`timm:NAME`) imports timm in that part, as serving does only for such a model.

    python -m bench.bare_floor ARCHITECTURE WEIGHTS_PATH RESULT_PATH
"""

import time

STARTED_AT = time.time()

import sys  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402

from bench.child import peak_rss_mb, write_result  # noqa: E402

NUM_CLASSES = 1000


def main(architecture: str, weights_path: str, result_path: str) -> None:
    imported_at = time.time()
    if architecture.startswith("timm:"):
        import timm

        model = timm.create_model(architecture.removeprefix("timm:"), num_classes=NUM_CLASSES)
    else:
        model = torchvision.models.get_model(architecture, weights=None, num_classes=NUM_CLASSES)
    model.load_state_dict(torch.load(weights_path, weights_only=True, map_location="cpu"))
    model.eval()
    with torch.inference_mode():
        model(torch.rand(1, 3, 224, 224))
    done_at = time.time()
    write_result(
        result_path,
        {
            "started_at": STARTED_AT,
            "imported_at": imported_at,
            "done_at": done_at,
            "peak_rss_mb": peak_rss_mb(),
            "threads": torch.get_num_threads(),
        },
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
