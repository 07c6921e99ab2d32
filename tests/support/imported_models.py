"""Test helpers for imported models: local stand-ins for torchvision's and timm's downloads, and photos.

Nothing can be downloaded here, so the real download-and-cache code runs against
local sources holding state dicts of the real shapes (random weights):

- torchvision: torch.hub's cache ($TORCH_HOME/hub/checkpoints), filled directly, or
  a `file://` URL put in place of the weights' URL, named like torchvision names its
  files (ARCH-<first 8 hex digits of the SHA-256>.pth) so the hash check can pass;
- timm: the Hugging Face Hub cache timm reads, filled as the hub lays it out, in
  offline mode.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageFilter

from lambda_src.artifact import Manifest
from lambda_src.classifier import ModelInput

MAX_PIXELS = 40_000_000
# A real 512x600 photograph that ships with matplotlib.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"
Transform = Callable[[Image.Image], torch.Tensor]


def random_state_dict(architecture: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's `architecture` with 1000 classes and random weights: the real shapes."""
    torch.manual_seed(seed)
    return torchvision.models.get_model(architecture, weights=None).state_dict()


def save_hash_named(state_dict: dict[str, torch.Tensor], folder: Path, stem: str) -> Path:
    """Save as torchvision names its files: STEM-<first 8 hex digits of the SHA-256>.pth."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    data = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.write_bytes(data)
    return path


def serve_weights_from(
    monkeypatch: pytest.MonkeyPatch, weights: torchvision.models.WeightsEnum, source: Path
) -> None:
    """Point `weights` at a local file instead of download.pytorch.org (for this test only)."""
    monkeypatch.setattr(weights.value, "url", source.as_uri())


def use_torch_home(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    """An empty torch.hub cache for this test; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(folder))
    return folder / "hub" / "checkpoints"


def fill_hub_cache(cache: Path, repo_id: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """Put `model.safetensors` of `repo_id` where the Hugging Face Hub cache keeps downloads."""
    from safetensors.torch import save_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    snapshot = repo / "snapshots" / HUB_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    path = snapshot / "model.safetensors"
    save_file({key: value.contiguous() for key, value in state_dict.items()}, str(path))
    return path


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Hugging Face Hub reads only `cache` and never goes online (it reads its settings at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def timm_random_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def landscape(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A photo-like picture: sky gradient, textured ground, soft objects, sensor noise, lens blur."""
    rng = np.random.default_rng(seed)
    width, height = size
    rows = np.linspace(0, 1, height)[:, None, None]
    sky = np.array([90, 150, 230]) * (1 - rows) + np.array([200, 220, 240]) * rows
    ground = np.array([70, 120, 50]) + rng.normal(0, 18, size=(height, width, 3))
    horizon = int(height * rng.uniform(0.45, 0.6))
    picture = np.broadcast_to(sky, (height, width, 3)).copy()
    picture[horizon:] = ground[horizon:]
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(4):
        cy, cx = rng.uniform(0.2, 0.9) * height, rng.uniform(0.1, 0.9) * width
        ry, rx = rng.uniform(0.05, 0.2) * height, rng.uniform(0.05, 0.2) * width
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        picture[inside] = rng.uniform(20, 235, size=3)
    picture += rng.normal(0, 4, size=picture.shape)
    image = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 800)))


@cache
def photos() -> dict[str, bytes]:
    """Test photographs, as a client sends them; names say whether serving decodes them at full scale.

    Serving decodes a JPEG at 1/2 or 1/4 scale when that still leaves both sides at least twice the
    resize size (lambda_src.images), so "reduced" ones differ from a full decode by a little.
    """
    with Image.open(GRACE_HOPPER) as opened:
        hopper = opened.convert("RGB")
    return {
        "hopper-full.png": encode(hopper, "PNG"),
        "hopper-small-full.jpg": encode(hopper.resize((300, 352), Image.Resampling.LANCZOS), "JPEG"),
        "hopper-reduced.jpg": GRACE_HOPPER.read_bytes(),
        # Drawn at a quarter of a phone camera's 4032x3024 and enlarged: as costly to decode, quick to make.
        "landscape-12mp-reduced.jpg": encode(
            landscape((1008, 756), seed=1).resize((4032, 3024), Image.Resampling.BICUBIC), "JPEG", quality=90
        ),
    }


def served_input(manifest: Manifest, data: bytes) -> torch.Tensor:
    """The input tensor serving makes of `data` for the model `manifest` describes (its input verb)."""
    return ModelInput(manifest.preprocessing, max_pixels=MAX_PIXELS)(data)


def full_decode(data: bytes) -> Image.Image:
    """The picture at full scale, as torchvision's and timm's own pipelines would open it."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def level_tolerance(manifest: Manifest, levels: float) -> torch.Tensor:
    """`levels` steps of 8-bit pixel value, in the normalised units of each channel."""
    return levels / 255 / torch.tensor(manifest.preprocessing.std)[:, None, None]


def assert_served_input_matches(manifest: Manifest, transform: Transform) -> None:
    """On every test photo, serving's input tensor is what the source library's `transform` makes.

    Tolerances: photos decoded at full scale give the same pixels (both resize with Pillow);
    JPEGs that serving decodes at 1/2 or 1/4 scale come out a little softer, so for them the
    mean difference is bounded.
    """
    for photo, data in photos().items():
        served = served_input(manifest, data)
        reference = transform(full_decode(data))
        assert (
            served.shape == reference.shape == (3, manifest.preprocessing.crop, manifest.preprocessing.crop)
        )
        difference = (served - reference).abs()
        if "reduced" in photo:
            assert difference.mean() < 0.05, (photo, float(difference.mean()))
        else:
            assert (difference <= level_tolerance(manifest, 0.01)).all(), (photo, float(difference.max()))


def picture_classes() -> dict[str, int]:
    """Which class each test photo shows: the Grace Hopper photos one, the landscape another."""
    return {photo: 1 if photo.startswith("hopper") else 2 for photo in photos()}


def fit_head(
    model: torch.nn.Module, transform: Callable[[Image.Image], torch.Tensor], scale: float = 5.0
) -> None:
    """Set the last Linear layer so each test photo's class wins by a clear margin, as in a trained model.

    Random weights rank classes almost by chance, and tiny input differences could flip their
    top-1; a nearest-prototype head on the (random) backbone's features makes the top-1 as
    stable as a trained network's, so "same top-1" is a meaningful check.
    """
    head = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0]))
    references = {"hopper-full.png": 1, "landscape-12mp-reduced.jpg": 2}
    model.eval()
    with torch.inference_mode():
        model(torch.stack([transform(full_decode(photos()[name])) for name in references]))
    hook.remove()
    features = captured[0].clone()
    mean = features.mean(dim=0)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for feature, label in zip(features, references.values(), strict=True):
            # The logit is `scale` at the photo's own features, -`scale` at the other photo's.
            direction = (feature - mean) / (feature - mean).norm() ** 2
            head.weight[label] = scale * direction
            head.bias[label] = -scale * float(mean @ direction)
