"""Error types shared by serving and training.

`ApiError` subclasses map one-to-one to an HTTP status and a stable error code, so
the handler turns any of them into `{"error": {"code", "message"}}` without
guessing. `ModelArtifactError` subclasses describe a model artifact that cannot be
used; the serving side reports them as 503 model_unavailable with a stable reason
(their details stay in the function's log), the training side as a failed publish.
"""

from __future__ import annotations

from enum import StrEnum


class UnavailableReason(StrEnum):
    """Why the model cannot be served: the `reason` of a 503 model_unavailable."""

    MISCONFIGURED = "misconfigured"  # a setting of the function is invalid
    NOT_PUBLISHED = "not_published"  # the store has no version of the model
    ARTIFACT_MISSING = "artifact_missing"  # the version's manifest or weights are missing
    INVALID_MODEL = "invalid_model"  # the manifest, hash, weights or architecture do not check out
    NO_ONNX_EXPORT = "no_onnx_export"  # the onnxruntime engine serves a version published without ONNX
    STORE_UNREADABLE = "store_unreadable"  # the store failed, refused or did not answer in time
    LOADING = "loading"  # another request is loading the model right now
    LOAD_ERROR = "load_error"  # an unexpected error while loading


# What callers read: short, stable, and free of paths, buckets, endpoints and library messages.
UNAVAILABLE_MESSAGES = {
    UnavailableReason.MISCONFIGURED: "the function is misconfigured",
    UnavailableReason.NOT_PUBLISHED: "no version of the model is published yet",
    UnavailableReason.ARTIFACT_MISSING: "a file of the published model is missing",
    UnavailableReason.INVALID_MODEL: "the published model is invalid",
    UnavailableReason.NO_ONNX_EXPORT: (
        "the published model version has no ONNX export, which this function's onnxruntime engine "
        "needs: serve it with the torch engine, or add one with `python -m model_training export-onnx`"
    ),
    UnavailableReason.STORE_UNREADABLE: "the model store cannot be read",
    UnavailableReason.LOADING: "the model is being loaded",
    UnavailableReason.LOAD_ERROR: "loading the model failed",
}


class ApiError(Exception):
    """An error the HTTP API reports to the client as JSON."""

    status: int = 500
    code: str = "internal_error"
    reason: str | None = None  # a finer, stable cause, for the errors that have one

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ModelUnavailable(ApiError):
    """The model cannot be served: `reason` and its short message for the caller, `detail` for the log."""

    status = 503
    code = "model_unavailable"
    reason: UnavailableReason

    def __init__(self, reason: UnavailableReason, detail: str) -> None:
        super().__init__(UNAVAILABLE_MESSAGES[reason])
        self.reason = reason
        self.detail = detail


class ModelArtifactError(Exception):
    """A model artifact cannot be read, or is missing, corrupt or inconsistent."""

    reason = UnavailableReason.STORE_UNREADABLE  # as such: a read that failed


class ArtifactNotFound(ModelArtifactError):
    """An object of the artifact (pointer, manifest, weights) does not exist."""

    reason = UnavailableReason.ARTIFACT_MISSING


class NotPublished(ArtifactNotFound):
    """The model has no LATEST pointer: nothing is published yet."""

    reason = UnavailableReason.NOT_PUBLISHED


class Misconfigured(ModelArtifactError):
    """A setting of the function makes the store unusable (e.g. AWS settings no S3 client accepts)."""

    reason = UnavailableReason.MISCONFIGURED


class ManifestError(ModelArtifactError):
    """The manifest is not valid JSON or does not follow the schema."""

    reason = UnavailableReason.INVALID_MODEL


class IntegrityError(ModelArtifactError):
    """The weights do not have the hash the manifest records, or are no state dict."""

    reason = UnavailableReason.INVALID_MODEL


class ArchitectureMismatch(ModelArtifactError):
    """The weights do not fit the architecture or class count the manifest names."""

    reason = UnavailableReason.INVALID_MODEL


class NonFiniteOutputs(ArchitectureMismatch):
    """Warm-up's outputs on a blank image hold NaN or infinity: no request could be answered in JSON."""

    def __init__(self) -> None:
        super().__init__(
            "the model's outputs are not finite numbers (NaN or infinity): its weights hold "
            "non-finite values or overflow; publish a model whose outputs are finite"
        )


class NoOnnxExport(ArtifactNotFound):
    """The version was published without `model.onnx`, so the onnxruntime engine cannot serve it."""

    reason = UnavailableReason.NO_ONNX_EXPORT


class TemporaryFolderError(ModelArtifactError):
    """The function's temporary folder (/tmp on Lambda) cannot hold the model's files while they load."""

    reason = UnavailableReason.LOAD_ERROR


class VersionExists(ModelArtifactError):
    """Publishing would overwrite an existing, immutable version."""
