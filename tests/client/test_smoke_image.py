"""The smoke test's default image is one of the demo set's unseen examples, shipped with the client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from endpoint_client.cli import SMOKE_IMAGE
from model_training.demo_data import write_examples


def test_the_default_image_is_the_demo_sets_first_circle(tmp_path: Path) -> None:
    circle = write_examples(tmp_path, per_class=1, image_format="jpeg")[0]

    with Image.open(SMOKE_IMAGE) as shipped, Image.open(circle) as generated:
        assert shipped.format == "JPEG"
        assert circle.name == SMOKE_IMAGE.name
        difference = np.abs(np.asarray(shipped, dtype=np.int16) - np.asarray(generated, dtype=np.int16))
    assert difference.mean() < 1.0  # the same picture; another JPEG encoder may round differently
