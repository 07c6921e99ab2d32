"""The model artifact contract: object layout, manifest schema and hashing.

    <prefix>/<model-name>/<version>/model.pt        torch.save(model.state_dict())
    <prefix>/<model-name>/<version>/manifest.json   Manifest.to_json()
    <prefix>/<model-name>/<version>/model.onnx      optional: the same network exported to ONNX
    <prefix>/<model-name>/<version>/model.onnx.data   its weights (ONNX external data), when it has any
    <prefix>/<model-name>/LATEST                    the newest published version, as text

This module is the one definition of the layout and the manifest fields: the
stores (`lambda_src.model_store`), the loader, the publishers and the stacks (for
the function's read permission) build every key with its functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from lambda_src.errors import ManifestError

# Version 2 added `provenance` and `preprocessing.interpolation`; version 1 manifests
# still load (no provenance, bilinear resizing: what version 1 serving did). Version 3 adds
# optional fields: `onnx` (the version's ONNX export, when it has one).
# Version 3 also added the optional `head`, `input_conv` and `preprocessing.channels` (absent:
# the registry's network, RGB input).
# Version 4 keeps the ONNX export's weights beside model.onnx, in model.onnx.data (`onnx.data_sha256`,
# `onnx.data_size_bytes`): ONNX Runtime reads them once instead of copying them out of the parsed
# graph (resnet50's session peaks ~90 MB lower), and models over protobuf's 2 GB limit export. A
# version 3 reader would open model.onnx without its weights, so it refuses version 4 instead.
SCHEMA_VERSION = 4
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4)
WEIGHTS_FILE = "model.pt"
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"  # the name model.onnx refers to its external data by
MANIFEST_FILE = "manifest.json"
LATEST_POINTER = "LATEST"
LATEST = "latest"  # the version selector that follows the LATEST pointer

# Names end up in S3 keys, IAM resource ARNs and URLs: keep them boring.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pixels are scaled to [0, 1] before normalising: a mean outside that range, or a std so small
# or large that (pixel - mean) / std leaves the range a network is trained on, is a mistake
# that would otherwise surface as scores of NaN or infinity.
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (0.01, 10.0)
# Layers a classifier head may hold (`--head` names them); those with weights need sizes.
HEAD_LAYER_KINDS = (
    "linear", "dropout", "relu", "gelu", "silu", "tanh", "sigmoid", "hardswish", "batchnorm", "layernorm",
    "flatten", "identity",
)  # fmt: skip
SIZED_HEAD_LAYERS = ("linear", "batchnorm", "layernorm")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")  # resize filters, as torchvision names them
SOURCE_KINDS = ("trained", "torchvision", "timm", "file")


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a valid model name or version, else raise ValueError."""
    if not isinstance(value, str) or not _NAME_PATTERN.match(value) or value in {".", ".."}:
        raise ValueError(
            f"invalid {kind} {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _is_integer(value: object) -> TypeGuard[int]:
    """An int that is not a bool (JSON's true would pass isinstance(value, int))."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def s3_store_uri(bucket: str, prefix: str) -> str:
    """The URI of a model store in S3, `s3://bucket/prefix` (the function's MODEL_STORE, ModelStoreUri)."""
    return f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")


def _shown(values: object) -> str:
    """Numbers as a person typed them (nan, inf), not as repr's tuples of floats."""
    if isinstance(values, (tuple, list)):
        return "(" + ", ".join(f"{v:g}" if _is_number(v) else repr(v) for v in values) + ")"
    return repr(values)


def model_prefix(prefix: str, model_name: str) -> str:
    """Key prefix under which every version of a model lives (no trailing slash)."""
    return "/".join(part for part in (prefix.strip("/"), check_name("model name", model_name)) if part)


def version_prefix(prefix: str, model_name: str, version: str) -> str:
    return f"{model_prefix(prefix, model_name)}/{check_name('version', version)}"


def version_file_key(prefix: str, model_name: str, version: str, file_name: str) -> str:
    """Key of one of a version's files (WEIGHTS_FILE, MANIFEST_FILE)."""
    return f"{version_prefix(prefix, model_name, version)}/{file_name}"


def weights_key(prefix: str, model_name: str, version: str) -> str:
    return version_file_key(prefix, model_name, version, WEIGHTS_FILE)


def manifest_key(prefix: str, model_name: str, version: str) -> str:
    return version_file_key(prefix, model_name, version, MANIFEST_FILE)


def onnx_key(prefix: str, model_name: str, version: str) -> str:
    return version_file_key(prefix, model_name, version, ONNX_FILE)


def onnx_data_key(prefix: str, model_name: str, version: str) -> str:
    return version_file_key(prefix, model_name, version, ONNX_DATA_FILE)


def latest_key(prefix: str, model_name: str) -> str:
    return f"{model_prefix(prefix, model_name)}/{LATEST_POINTER}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model's input tensor (eval time)."""

    resize: int = 256  # shorter side, pixels
    crop: int = 224  # square centre crop, pixels
    mean: tuple[float, ...] = IMAGENET_MEAN  # one per channel
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"  # the resize filter, one of INTERPOLATIONS
    channels: int = 3  # 3: RGB; 1: greyscale (Pillow's convert("L"), as torchvision's Grayscale does)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or not _is_integer(self.channels):
            raise ManifestError(f"preprocessing.channels must be 1 or 3, got {self.channels!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ManifestError(
                f"preprocessing.interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        if not (_is_integer(self.resize) and _is_integer(self.crop)):
            raise ManifestError("preprocessing.resize and preprocessing.crop must be integers")
        if not 0 < self.crop <= self.resize <= 4096:
            raise ManifestError(
                f"preprocessing needs 0 < crop <= resize <= 4096, got crop={self.crop} resize={self.resize}"
            )
        for name, values, (low, high) in (("mean", self.mean, MEAN_RANGE), ("std", self.std, STD_RANGE)):
            if len(values) != self.channels or not all(_is_number(v) for v in values):
                count = "three numbers" if self.channels == 3 else "one number"
                raise ManifestError(f"preprocessing.{name} must be {count} (finite ones), got {values!r}")
            if not all(low <= v <= high for v in values):
                raise ManifestError(
                    f"preprocessing.{name} must be from {low:g} to {high:g} (pixels are scaled to 0-1), "
                    f"got {values!r}"
                )


@dataclass(frozen=True)
class HeadLayer:
    """One layer of a classifier head: its kind, and its sizes for those that hold weights."""

    kind: str  # one of HEAD_LAYER_KINDS
    in_features: int = 0  # linear: inputs; batchnorm/layernorm: features
    out_features: int = 0  # linear: outputs; batchnorm/layernorm: features

    def __post_init__(self) -> None:
        if self.kind not in HEAD_LAYER_KINDS:
            raise ManifestError(
                f"head layer kind must be one of {', '.join(HEAD_LAYER_KINDS)}, got {self.kind!r}"
            )
        sized = self.kind in SIZED_HEAD_LAYERS
        sizes = (self.in_features, self.out_features)
        if not all(_is_integer(size) and (size > 0 if sized else size == 0) for size in sizes):
            raise ManifestError(
                f"head layer {self.kind} needs {'positive sizes' if sized else 'no sizes'}, got {sizes}"
            )

    def describe(self) -> str:
        return f"linear({self.in_features}->{self.out_features})" if self.kind == "linear" else self.kind


@dataclass(frozen=True)
class Head:
    """A classifier head that replaces the registry's: a Sequential of `layers` at `module` (e.g. fc)."""

    module: str
    layers: tuple[HeadLayer, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.module, str) or not self.module:
            raise ManifestError("head.module must name the classifier module it replaces")
        if not any(layer.kind == "linear" for layer in self.layers):
            raise ManifestError("a head needs at least one linear layer")

    @property
    def outputs(self) -> int:
        return [layer for layer in self.layers if layer.kind == "linear"][-1].out_features

    def describe(self) -> str:
        return f"{self.module} = " + "-".join(layer.describe() for layer in self.layers)

    @classmethod
    def from_dict(cls, data: Any) -> Head:
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise ManifestError("manifest head must be an object with a module and a list of layers")
        if not all(isinstance(layer, dict) for layer in data["layers"]):
            raise ManifestError("manifest head layers must be objects")
        layers = tuple(
            HeadLayer(
                kind=layer.get("kind"),
                in_features=layer.get("in_features", 0),
                out_features=layer.get("out_features", 0),
            )
            for layer in data["layers"]
        )
        return cls(module=str(data.get("module") or ""), layers=layers)


@dataclass(frozen=True)
class Provenance:
    """Where the weights came from: our trainer, torchvision, timm, or a user's file."""

    kind: str  # one of SOURCE_KINDS
    name: str = ""  # weights name (resnet50.IMAGENET1K_V2, timm:convnext_tiny.fb_in1k) or file name
    url: str | None = None  # where the original weights are published, when known
    sha256: str | None = None  # of the original file, as downloaded or given
    license: str | None = None  # as the source library declares it

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ManifestError(
                f"provenance.kind must be one of {', '.join(SOURCE_KINDS)}, got {self.kind!r}"
            )

    @classmethod
    def from_dict(cls, data: Any) -> Provenance:
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            raise ManifestError("manifest provenance must be an object with a kind")
        fields = {key: data.get(key) for key in ("url", "sha256", "license")}
        return cls(kind=data["kind"], name=str(data.get("name", "")), **fields)


@dataclass(frozen=True)
class OnnxExport:
    """The version's `model.onnx` (and `model.onnx.data`): what checks them, and how closely the
    export matched the torch model at publish.

    The network takes `input` (N, 3, crop, crop) float32 with a dynamic batch axis N and
    returns `logits` (N, num_classes). Its weights are in `model.onnx.data` when `data_sha256`
    is set (version 4), else inside `model.onnx` (version 3, and a model too small to have any).
    """

    sha256: str
    size_bytes: int
    opset: int  # of the default ONNX domain
    max_logit_difference: float  # largest |ONNX - torch| logit over the check inputs
    tolerance: float  # the bound it was checked against
    checked_inputs: int  # images compared, all with the same top-1
    exporter: str = ""  # "torch <version>, onnx <version>"
    data_sha256: str | None = None  # model.onnx.data's
    data_size_bytes: int | None = None

    def __post_init__(self) -> None:
        _check_file_record("onnx.sha256", self.sha256, "onnx.size_bytes", self.size_bytes)
        if not _is_integer(self.opset) or self.opset < 1:
            raise ManifestError("manifest onnx.opset must be a positive integer")
        for name in ("max_logit_difference", "tolerance"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ManifestError(f"manifest onnx.{name} must be a number >= 0")
        if not _is_integer(self.checked_inputs) or self.checked_inputs < 1:
            raise ManifestError("manifest onnx.checked_inputs must be a positive integer")
        if (self.data_sha256 is None) != (self.data_size_bytes is None):
            raise ManifestError("manifest onnx.data_sha256 and onnx.data_size_bytes go together")
        if self.data_sha256 is not None:
            _check_file_record(
                "onnx.data_sha256", self.data_sha256, "onnx.data_size_bytes", self.data_size_bytes
            )

    @property
    def files(self) -> dict[str, tuple[str, int]]:
        """The export's files in a version's folder: name -> (SHA-256, size), model.onnx first."""
        files = {ONNX_FILE: (self.sha256, self.size_bytes)}
        if self.data_sha256 is not None and self.data_size_bytes is not None:
            files[ONNX_DATA_FILE] = (self.data_sha256, self.data_size_bytes)
        return files

    @classmethod
    def from_dict(cls, data: Any) -> OnnxExport:
        if not isinstance(data, dict):
            raise ManifestError("manifest onnx must be an object")
        required = ("sha256", "size_bytes", "opset", "max_logit_difference", "tolerance", "checked_inputs")
        missing = [key for key in required if key not in data]
        if missing:
            raise ManifestError(f"manifest onnx is missing {', '.join(missing)}")
        return cls(
            **{key: data[key] for key in required},
            exporter=str(data.get("exporter", "")),
            data_sha256=data.get("data_sha256"),
            data_size_bytes=data.get("data_size_bytes"),
        )


def _check_file_record(sha256_field: str, sha256: object, size_field: str, size_bytes: object) -> None:
    """A file's record in the manifest: 64 lowercase hex digits and a positive size."""
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ManifestError(f"manifest {sha256_field} must be 64 lowercase hex digits")
    if not _is_integer(size_bytes) or size_bytes <= 0:
        raise ManifestError(f"manifest {size_field} must be a positive integer")


@dataclass(frozen=True)
class Manifest:
    """Everything the loader needs to rebuild and trust a published model."""

    model_name: str
    version: str
    architecture: str
    labels: tuple[str, ...]
    weights_sha256: str
    weights_size_bytes: int
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    metrics: dict[str, float] = field(default_factory=dict)
    framework: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    provenance: Provenance | None = None  # None in version 1 manifests
    onnx: OnnxExport | None = None  # None before version 3, and when the version has no ONNX export
    head: Head | None = None  # a head other than the registry's (version 3)
    input_conv: str | None = None  # the first convolution, built for 1 channel (version 3)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def __post_init__(self) -> None:
        try:
            check_name("model name", self.model_name)
            check_name("version", self.version)
        except ValueError as error:
            raise ManifestError(str(error)) from None
        if not _is_integer(self.schema_version) or self.schema_version not in READABLE_SCHEMA_VERSIONS:
            raise ManifestError(
                f"manifest schema_version {self.schema_version!r} is not supported "
                f"(this runtime reads versions {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})"
            )
        if len(self.labels) < 2 or not all(isinstance(label, str) for label in self.labels):
            raise ManifestError("manifest labels must be a list of at least two strings")
        if not isinstance(self.architecture, str):
            raise ManifestError("manifest architecture must be a string")
        if not isinstance(self.weights_sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.weights_sha256):
            raise ManifestError("manifest weights_sha256 must be 64 lowercase hex digits")
        if not _is_integer(self.weights_size_bytes) or self.weights_size_bytes <= 0:
            raise ManifestError("manifest weights_size_bytes must be a positive integer")
        if not all(isinstance(name, str) and _is_number(value) for name, value in self.metrics.items()):
            raise ManifestError("manifest metrics must map names to numbers (finite ones)")
        if not all(
            isinstance(name, str) and isinstance(value, str) for name, value in self.framework.items()
        ):
            raise ManifestError("manifest framework must map package names to version strings")
        if self.input_conv is not None and not isinstance(self.input_conv, str):
            raise ManifestError("manifest input_conv must name a module")
        if (self.input_conv is not None) != (self.preprocessing.channels == 1):
            raise ManifestError(
                "manifest input_conv names the first convolution of a 1-channel model: it goes with "
                "preprocessing.channels 1, and only with it"
            )
        if self.head is not None and self.head.outputs != len(self.labels):
            raise ManifestError(
                f"manifest head has {self.head.outputs} outputs "
                f"but the manifest lists {len(self.labels)} labels"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["num_classes"] = self.num_classes
        data["labels"] = list(self.labels)
        data["preprocessing"]["mean"] = list(self.preprocessing.mean)
        data["preprocessing"]["std"] = list(self.preprocessing.std)
        return data

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        required = ("model_name", "version", "architecture", "labels", "weights_sha256", "weights_size_bytes")
        missing = [key for key in required if key not in data]
        if missing:
            raise ManifestError(f"manifest is missing {', '.join(missing)}")
        labels = data["labels"]
        if not isinstance(labels, list):
            raise ManifestError("manifest labels must be a list of strings")
        if "num_classes" in data and (
            not _is_integer(data["num_classes"]) or data["num_classes"] != len(labels)
        ):
            raise ManifestError(
                f"manifest num_classes is {data['num_classes']} but it lists {len(labels)} labels"
            )
        raw_pre = _object(data, "preprocessing")
        try:
            preprocessing = Preprocessing(
                resize=raw_pre.get("resize", 256),
                crop=raw_pre.get("crop", 224),
                mean=tuple(raw_pre.get("mean", IMAGENET_MEAN)),
                std=tuple(raw_pre.get("std", IMAGENET_STD)),
                interpolation=raw_pre.get("interpolation", "bilinear"),
                channels=raw_pre.get("channels", 3),
            )
        except TypeError as error:
            raise ManifestError(f"manifest preprocessing is invalid: {error}") from None
        return cls(
            model_name=data["model_name"],
            version=data["version"],
            architecture=data["architecture"],
            labels=tuple(labels),
            weights_sha256=data["weights_sha256"],
            weights_size_bytes=data["weights_size_bytes"],
            preprocessing=preprocessing,
            metrics=_object(data, "metrics"),
            framework=_object(data, "framework"),
            created_at=str(data.get("created_at", "")),
            provenance=Provenance.from_dict(data["provenance"]) if data.get("provenance") else None,
            onnx=OnnxExport.from_dict(data["onnx"]) if data.get("onnx") is not None else None,
            head=Head.from_dict(data["head"]) if data.get("head") is not None else None,
            input_conv=data.get("input_conv"),
            schema_version=data.get("schema_version", SCHEMA_VERSION),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw, parse_constant=_refuse_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ManifestError(f"manifest is not valid JSON: {error}") from None
        except RecursionError:
            raise ManifestError("manifest is not valid JSON: it is nested too deeply") from None
        return cls.from_dict(data)


def _refuse_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which are not JSON: a manifest holding them is invalid."""
    raise ManifestError(f"manifest is not valid JSON: {name} is not a JSON number")


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of the optional JSON object `data[key]` (empty when absent); ManifestError if not an object."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"manifest {key} must be an object, got {type(value).__name__}")
    return dict(value)
