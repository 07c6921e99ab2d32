"""Manifest validation: a manifest that breaks the schema in any field is a ManifestError naming it.

The loader turns a ManifestError into a 503 with the reason and `publish` into a readable
error; any other exception would be an "unexpected error" 503 or a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambda_src.artifact import Manifest
from lambda_src.errors import ManifestError
from tests.support.tiny_model import make_manifest

VALID = make_manifest("colours", "v1", b"weights").to_dict()


def test_a_valid_manifest_survives_the_round_trip_through_json() -> None:
    manifest = Manifest.from_json(json.dumps(VALID).encode())
    assert manifest.to_dict() == VALID


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("metrics", "x", "metrics must be an object"),
        ("metrics", {"val_accuracy": "high"}, "metrics must map names to numbers"),
        ("metrics", {"val_accuracy": True}, "metrics must map names to numbers"),
        ("framework", [1], "framework must be an object"),
        ("framework", {"torch": 2}, "framework must map package names to version strings"),
        ("weights_size_bytes", True, "weights_size_bytes must be a positive integer"),
        ("weights_size_bytes", 0, "weights_size_bytes must be a positive integer"),
        ("weights_sha256", 12, "weights_sha256 must be 64 lowercase hex digits"),
        ("schema_version", True, "schema_version True is not supported"),
        ("num_classes", True, "num_classes"),
        ("architecture", ["resnet18"], "architecture must be a string"),
        ("preprocessing", "resize", "preprocessing must be an object"),
        ("preprocessing", {"resize": True, "crop": 1}, "resize and preprocessing.crop must be integers"),
        ("preprocessing", {"crop": True}, "resize and preprocessing.crop must be integers"),
        ("preprocessing", {"mean": [True, 0.5, 0.5]}, "preprocessing.mean must be three numbers"),
        ("preprocessing", {"std": 5}, "preprocessing is invalid"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_manifest_error_naming_it(field: str, value: Any, words: str) -> None:
    with pytest.raises(ManifestError, match=words):
        Manifest.from_json(json.dumps({**VALID, field: value}).encode())
