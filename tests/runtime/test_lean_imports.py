"""Serving imports torchvision without `torch._dynamo`, and nothing else notices.

Each test runs in a fresh interpreter: whether a module gets imported can only be seen
in a process that has not imported it yet. When a torchvision upgrade imports
`torch._dynamo` some new way, the first test fails: serving then still works, only
as slowly as before (the others check that part).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# What serving imports, then everything a classifier runs: build, fold, transform, forward.
SERVING_WITHOUT_DYNAMO = """
import sys
from lambda_src.lean_imports import without_dynamo
with without_dynamo():
    import lambda_src.service
    from lambda_src.contract import ModelEngine
    from lambda_src.engines import import_engine
    import_engine(ModelEngine.TORCH)  # as the handler does at init: the engine's modules load lazily
import torch
from PIL import Image
from lambda_src.architectures import build_and_load, build_model
from lambda_src.artifact import Preprocessing
from lambda_src.loader import optimise_for_inference
from lambda_src.preprocessing import eval_transform
weights = build_model("mobilenet_v3_small", 3).state_dict()
# Built on the meta device as serving builds it: its initialisers must not import the compiler.
network = optimise_for_inference(build_and_load("mobilenet_v3_small", 3, weights, "test").eval())
image = Image.new("RGB", (64, 48), (200, 30, 90))
with torch.inference_mode():
    network(eval_transform(Preprocessing(resize=40, crop=32))(image).unsqueeze(0))
print(sorted(name for name in sys.modules if name.startswith("torch._dynamo")))
"""

# After the window: the real compiler on demand, and the stand-ins' names behave as the real ones.
REAL_DYNAMO_LATER = """
import sys
import torch
from PIL import Image
from lambda_src.lean_imports import without_dynamo
with without_dynamo():
    import torchvision
    from torchvision.transforms import v2
from torchvision import tv_tensors
roi_align = sys.modules["torchvision.ops.roi_align"]  # the module; torchvision.ops.roi_align is a function
transform = v2.Compose([v2.Resize(20, antialias=True), v2.ToDtype(torch.float32, scale=True)])
image = Image.new("RGB", (64, 48), (200, 30, 90))
before = transform(tv_tensors.Image(v2.functional.pil_to_tensor(image)))
assert "torch._dynamo" not in sys.modules
import torch._dynamo
import torch._dynamo.utils
assert torch._dynamo is sys.modules["torch._dynamo"]
assert torch._dynamo.__file__.endswith("torch/_dynamo/__init__.py"), torch._dynamo
assert roi_align.is_compile_supported("cpu") == torch._dynamo.utils.is_compile_supported("cpu")
after = transform(tv_tensors.Image(v2.functional.pil_to_tensor(image)))
assert type(after) is type(before) is tv_tensors.Image and torch.equal(after, before)
print("real dynamo after the window")
"""

# A torchvision that asks more of torch._dynamo than the stand-ins have gets the real thing.
MORE_THAN_THE_STAND_INS_HAVE = """
import sys
from lambda_src.lean_imports import without_dynamo
with without_dynamo():
    import torch._dynamo.utils
    stand_in = sys.modules["torch._dynamo"]
    import torch._dynamo.config as config  # a submodule the stand-in package does not have
    real = sys.modules["torch._dynamo"]
    assert real is not stand_in and config is real.config, (real, stand_in)
    assert torch._dynamo is real and torch._dynamo.utils.__file__.endswith("torch/_dynamo/utils.py")
    assert config.__spec__.origin.endswith("torch/_dynamo/config.py"), config.__spec__
with without_dynamo():
    pass  # the real one is imported now: nothing to stand in for
assert sys.modules["torch._dynamo"] is real
print("real dynamo on demand")
"""


def run_fresh(code: str) -> str:
    finished = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_serving_imports_and_runs_a_classifier_without_torch_dynamo() -> None:
    # A failure here means torchvision now imports torch._dynamo another way:
    # serving is as slow as without lean_imports, and lean_imports needs a look.
    assert run_fresh(SERVING_WITHOUT_DYNAMO) == "[]"


@pytest.mark.slow
def test_a_later_import_gets_the_real_torch_dynamo_and_the_stand_ins_act_like_it() -> None:
    assert run_fresh(REAL_DYNAMO_LATER) == "real dynamo after the window"


@pytest.mark.slow
def test_asking_the_stand_ins_for_more_falls_back_to_the_real_torch_dynamo() -> None:
    assert run_fresh(MORE_THAN_THE_STAND_INS_HAVE) == "real dynamo on demand"


# A timm model: serving imports timm only to build one, and without the compiler too.
TIMM_WITHOUT_DYNAMO = """
import sys
import torch
from lambda_src.lean_imports import without_dynamo
with without_dynamo():
    import lambda_src.service
    from lambda_src.contract import ModelEngine
    from lambda_src.engines import import_engine
    import_engine(ModelEngine.TORCH)  # as the handler does at init: the engine's modules load lazily
from lambda_src.architectures import build_and_load, build_model
from lambda_src.loader import optimise_for_inference
weights = build_model("timm:resnet18.a1_in1k", 3).state_dict()
network = optimise_for_inference(build_and_load("timm:resnet18.a1_in1k", 3, weights, "test").eval())
with torch.inference_mode():
    scores = network(torch.zeros(1, 3, 64, 64))
assert scores.shape == (1, 3) and "timm" in sys.modules
print(sorted(name for name in sys.modules if name.startswith("torch._dynamo")))
"""


@pytest.mark.slow
def test_a_timm_model_is_built_and_run_without_torch_dynamo() -> None:
    # A failure here means timm now asks torch._dynamo for more than the stand-ins have:
    # timm models then start as slowly as without lean_imports (about 1.2 s more).
    assert run_fresh(TIMM_WITHOUT_DYNAMO) == "[]"
