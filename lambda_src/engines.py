"""The serving engines: which one loads the model, imported only when chosen (torch-free itself).

`MODEL_ENGINE` (`RuntimeSettings.engine`) picks one:

    torch        lambda_src.loader + lambda_src.classifier: model.pt in PyTorch (the default)
    onnxruntime  lambda_src.onnx_engine: the version's model.onnx in ONNX Runtime, no torch

Each engine's modules are imported on first use (inside `lean_imports.without_dynamo`, which
only matters to torch's), so a function runs with only its own engine's packages installed.
Both classifiers have the same verbs (`input`, `predict`, `output`) and `model.manifest`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lambda_src.contract import ModelEngine
from lambda_src.lean_imports import without_dynamo
from lambda_src.model_store import ModelLocation, ModelStore
from lambda_src.settings import RuntimeSettings

if TYPE_CHECKING:
    from lambda_src.classifier import ImageClassifier
    from lambda_src.onnx_engine import OnnxClassifier

    Classifier = ImageClassifier | OnnxClassifier
else:
    Classifier = Any

ENGINE_MODULES = {
    ModelEngine.TORCH: ("lambda_src.loader", "lambda_src.classifier"),
    ModelEngine.ONNXRUNTIME: ("lambda_src.onnx_engine",),
}


def import_engine(engine: ModelEngine) -> None:
    """Import the engine's modules now (the handler does this at init, while the store prefetches)."""
    with without_dynamo():
        for module in ENGINE_MODULES[engine]:
            importlib.import_module(module)


def load_classifier(
    location: ModelLocation, *, settings: RuntimeSettings, store: ModelStore | None = None
) -> Classifier:
    """Load the model at `location` with `settings.engine`; a `ModelArtifactError` says why it cannot."""
    import_engine(settings.engine)
    if settings.engine is ModelEngine.ONNXRUNTIME:
        from lambda_src.onnx_engine import OnnxClassifier, load_onnx_model

        onnx_model = load_onnx_model(location, threads=settings.torch_threads, store=store)
        return OnnxClassifier(onnx_model, max_image_pixels=settings.max_image_pixels)
    from lambda_src.classifier import ImageClassifier
    from lambda_src.loader import load_model

    torch_model = load_model(location, torch_threads=settings.torch_threads, store=store)
    return ImageClassifier(torch_model, max_image_pixels=settings.max_image_pixels)
