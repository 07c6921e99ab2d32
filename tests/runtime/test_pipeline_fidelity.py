"""The served pipeline equals the source library's: every crop down to 128, every filter, real photos.

The reference is what a user's own evaluation code does: Pillow decodes the whole photo,
then torchvision's eval transforms (Resize, CenterCrop, ToTensor, Normalize) run on it.
Serving decodes large JPEGs at a reduced scale and resizes with Pillow's own filters; the
top-5 probabilities it gives must stay within 2e-3 of the reference's, top-1 identical.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
import torchvision.transforms as transforms
from torchvision.transforms import InterpolationMode

from lambda_src.artifact import INTERPOLATIONS, Preprocessing
from lambda_src.classifier import ModelInput
from tests.support.imported_models import MAX_PIXELS, fit_head, full_decode, photos

CROPS = (128, 160, 192, 224, 256, 288)
TOLERANCE = 2e-3


def reference_transform(preprocessing: Preprocessing) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize(
                preprocessing.resize, interpolation=InterpolationMode(preprocessing.interpolation)
            ),
            transforms.CenterCrop(preprocessing.crop),
            transforms.ToTensor(),
            transforms.Normalize(preprocessing.mean, preprocessing.std),
        ]
    )


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """mobilenet_v3_small with a head fitted to the photos, so its top-1 is as clear as a trained one's."""
    torch.manual_seed(0)
    network = torchvision.models.mobilenet_v3_small().eval()
    fit_head(network, reference_transform(Preprocessing()))
    return network


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("crop", CROPS)
def test_served_top_5_scores_match_the_reference_pipeline(
    model: torch.nn.Module, crop: int, interpolation: str
) -> None:
    preprocessing = Preprocessing(resize=round(crop * 8 / 7), crop=crop, interpolation=interpolation)
    served_input = ModelInput(preprocessing, max_pixels=MAX_PIXELS)
    reference = reference_transform(preprocessing)

    for photo, data in photos().items():
        with torch.inference_mode():
            served, expected = torch.softmax(
                model(torch.stack([served_input(data), reference(full_decode(data))])), dim=1
            )
        top5 = expected.topk(5).indices
        assert int(served.argmax()) == int(top5[0]), photo
        difference = float((served[top5] - expected[top5]).abs().max())
        assert difference <= TOLERANCE, (photo, difference)
