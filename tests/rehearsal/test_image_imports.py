"""Every module the handler imports, at init and on requests, is in the image.

The image has the Python standard library, what the base image brings (boto3 and the
runtime interface client, with their dependencies) and exactly what the Dockerfile's
`pip install --no-deps` lines name. A stray third-party import (one that only the development environment
has) fails here instead of as an init error after a deploy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lambda_rehearsal.image_build import image_pins
from lambda_src.architectures import build_model
from lambda_src.contract import ModelEngine
from model_training.publishing import publish
from tests.support.events import api_gateway_event, json_event
from tests.support.images import b64, coloured_image, encode
from tests.support.tiny_model import LABELS, make_manifest, state_dict_bytes
from tests.support.tiny_model import publish as publish_objects

# What public.ecr.aws/lambda/python brings besides the standard library.
BASE_IMAGE_PACKAGES = ("boto3", "awslambdaric")
TIMM_ARCHITECTURE = "timm:mobilenetv3_small_050.lamb_in1k"

# Runs in the task root, without the site module, so only the standard library and what
# PYTHONPATH names (the image's packages) can be imported: the handler starts and answers the
# events, and optional imports (torch tries tqdm) fall back exactly as they would in the image.
REQUESTS = """
import json, sys
import lambda_src.handler as handler
for event in json.load(sys.stdin):
    response = handler.lambda_handler(event, None)
    assert response["statusCode"] == 200, response
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def image_distributions(engine: ModelEngine = ModelEngine.TORCH) -> set[str]:
    """The image's distributions: what it installs (with --no-deps: exactly those) and the base image's."""
    found = set(image_pins(engine))
    wanted = [Requirement(name) for name in BASE_IMAGE_PACKAGES]
    while wanted:  # the base image's packages come with their dependencies
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(name) or []:
            dependency = Requirement(line)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                wanted.append(dependency)
    return found


def image_site_packages(folder: Path, engine: ModelEngine = ModelEngine.TORCH) -> Path:
    """A site-packages folder holding only the image's distributions (links into this environment's)."""
    folder.mkdir()
    for name in image_distributions(engine):
        distribution = metadata.distribution(name)
        tops = {
            Path(str(file)).parts[0] for file in distribution.files or [] if not str(file).startswith("..")
        }
        for top in tops - {"__pycache__"}:
            source = Path(str(distribution.locate_file(top)))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


def run_handler_in_image(
    task_root: Path,
    site_packages: Path,
    store: Path,
    model_name: str,
    events: list[dict],
    engine: ModelEngine = ModelEngine.TORCH,
) -> subprocess.CompletedProcess[str]:
    """The handler started in the task root with only the image's packages, answering `events`."""
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(site_packages),
        "MODEL_STORE": str(store),
        "MODEL_NAME": model_name,
        "MODEL_ENGINE": engine.value,
        "TORCH_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-S", "-c", REQUESTS],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        cwd=task_root,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_the_handler_imports_only_what_the_image_provides(
    task_root: Path, training_output: Path, shared_dir: Path
) -> None:
    # Given the image's task root, its packages, and a published model
    site_packages = image_site_packages(shared_dir / "image-site-packages")
    store = shared_dir / "imports-store"
    publish(training_output, str(store), model_name="colours", progress=False)
    image = encode(coloured_image("red", seed=3), "JPEG")
    events = [
        api_gateway_event("GET", "/health"),
        json_event({"image": b64(image)}),
        api_gateway_event("POST", "/predict", body=image, content_type="image/jpeg"),
    ]
    # When the handler starts there and answers requests, with nothing else importable
    finished = run_handler_in_image(task_root, site_packages, store, "colours", events)
    # Then it started and answered (a module the image lacks would be an init error)
    assert finished.returncode == 0, finished.stderr[-3000:]
    imported = set(json.loads(finished.stdout.splitlines()[-1]))
    assert {"torch", "torchvision", "PIL", "aws_lambda_powertools", "lambda_src"} <= imported
    # and the check could see a stray: development packages were out of reach
    assert not (site_packages / "pytest").exists() and not (site_packages / "moto").exists()


@pytest.mark.slow
def test_the_onnxruntime_image_serves_a_published_export_without_torch(
    task_root: Path, training_output: Path, shared_dir: Path
) -> None:
    # Given the onnxruntime image's packages (no torch) and a model published with model.onnx
    site_packages = image_site_packages(shared_dir / "onnxruntime-site-packages", ModelEngine.ONNXRUNTIME)
    store = shared_dir / "onnxruntime-store"
    published = publish(training_output, str(store), model_name="colours", progress=False, onnx=True)
    assert published.manifest.onnx is not None, published.onnx_skipped
    image = encode(coloured_image("red", seed=3), "JPEG")
    events = [
        api_gateway_event("GET", "/health"),
        json_event({"image": b64(image)}),
        api_gateway_event("POST", "/predict", body=image, content_type="image/jpeg"),
    ]
    # When the handler starts there with MODEL_ENGINE=onnxruntime and answers requests
    finished = run_handler_in_image(
        task_root, site_packages, store, "colours", events, ModelEngine.ONNXRUNTIME
    )
    # Then it answered from onnxruntime, with torch out of reach and never imported
    assert finished.returncode == 0, finished.stderr[-3000:]
    imported = set(json.loads(finished.stdout.splitlines()[-1]))
    assert {"onnxruntime", "numpy", "PIL", "aws_lambda_powertools", "lambda_src"} <= imported
    assert not imported & {"torch", "torchvision", "timm"}
    assert not (site_packages / "torch").exists()


@pytest.mark.slow
def test_a_timm_model_is_served_with_only_what_the_image_provides(task_root: Path, shared_dir: Path) -> None:
    # Given the image's packages and a published timm model
    site_packages = image_site_packages(shared_dir / "timm-image-site-packages")
    store = shared_dir / "timm-store"
    weights = state_dict_bytes(build_model(TIMM_ARCHITECTURE, len(LABELS)))
    manifest = make_manifest("timm-colours", "v1", weights, architecture=TIMM_ARCHITECTURE)

    def write(key: str, data: bytes) -> None:
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(data)

    publish_objects(
        write, prefix="", model_name="timm-colours", version="v1", weights=weights, manifest=manifest
    )
    image = encode(coloured_image("red", seed=3), "JPEG")
    events = [api_gateway_event("POST", "/predict", body=image, content_type="image/jpeg")]
    # When the handler serves it there
    finished = run_handler_in_image(task_root, site_packages, store, "timm-colours", events)
    # Then timm and everything it imports came from the image
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert {"timm", "torch", "lambda_src"} <= set(json.loads(finished.stdout.splitlines()[-1]))


BATCH_JOB = """
import json, sys
import lambda_src.batch_handler as handler
print(json.dumps(handler.lambda_handler({"resolve_model_version": "latest"}, None)))
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


@pytest.mark.slow
def test_the_batch_handler_imports_only_what_the_image_provides(
    task_root: Path, training_output: Path, shared_dir: Path
) -> None:
    # Given the same image started with the batch function's CMD, and a published model
    site_packages = image_site_packages(shared_dir / "batch-image-site-packages")
    store = shared_dir / "batch-imports-store"
    publish(training_output, str(store), model_name="colours", progress=False)
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(site_packages),
        "MODEL_STORE": str(store),
        "MODEL_NAME": "colours",
        "AWS_REGION": "us-east-1",  # Lambda always sets it; the module makes its S3 client at init
    }
    # When it starts there and resolves a job's version
    finished = subprocess.run(
        [sys.executable, "-S", "-c", BATCH_JOB],
        capture_output=True,
        text=True,
        cwd=task_root,
        env=environment,
        timeout=120,
        check=False,
    )
    # Then nothing it needs is missing from the image
    assert finished.returncode == 0, finished.stderr[-3000:]
    answer, modules = finished.stdout.splitlines()[-2:]
    assert json.loads(answer)["name"] == "colours"
    assert {"torch", "torchvision", "PIL", "boto3", "lambda_src"} <= set(json.loads(modules))
