"""timm architectures (`timm:NAME`) serve like torchvision ones, and cost torchvision models nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lambda_src.architectures import build_model, check_architecture
from lambda_src.errors import ArchitectureMismatch
from tests.support.tiny_model import make_manifest, publish, state_dict_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMM_ARCHITECTURE = "timm:mobilenetv3_small_050.lamb_in1k"

# Loads a torchvision model, then a timm one, as two cold starts would; says when timm was imported.
LOAD_BOTH = """
import json, sys
from lambda_src.loader import load_model
from lambda_src.model_store import ModelLocation
imported = {}
for name in ("torchvision-model", "timm-model"):
    load_model(ModelLocation(store_uri=sys.argv[1], model_name=name, version="latest"), torch_threads=1)
    imported[name] = "timm" in sys.modules
print(json.dumps(imported))
"""


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("timm:no_such_net", "unknown timm model 'no_such_net'"),
        ("timm:resnet18.no_such_tag", "timm has no pretrained tag 'resnet18.no_such_tag'"),
        ("no_such_net", "(or any timm model as timm:NAME)"),
    ],
)
def test_unknown_timm_names_are_refused_in_words(name: str, words: str) -> None:
    with pytest.raises(ArchitectureMismatch, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_architecture(name)


def test_timm_is_imported_only_when_a_timm_model_is_loaded(tmp_path: Path) -> None:
    store = tmp_path / "store"

    def write(key: str, data: bytes) -> None:
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(data)

    for name, architecture in (("torchvision-model", "squeezenet1_1"), ("timm-model", TIMM_ARCHITECTURE)):
        weights = state_dict_bytes(build_model(architecture, 3))
        manifest = make_manifest(name, "v1", weights, architecture=architecture)
        publish(write, prefix="", model_name=name, version="v1", weights=weights, manifest=manifest)

    finished = subprocess.run(
        [sys.executable, "-c", LOAD_BOTH, str(store)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=180,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout) == {"torchvision-model": False, "timm-model": True}
