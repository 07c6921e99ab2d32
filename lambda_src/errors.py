"""Error types shared by serving and training.

`ApiError` subclasses map one-to-one to an HTTP status and a stable error code, so
the handler turns any of them into `{"error": {"code", "message"}}` without
guessing. `ModelArtifactError` subclasses describe a model artifact that cannot be
used; the serving side reports them as 503 model_unavailable, the training side as
a failed publish.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the HTTP API reports to the client as JSON."""

    status: int = 500
    code: str = "internal_error"

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
    status = 503
    code = "model_unavailable"


class ModelArtifactError(Exception):
    """A model artifact is missing, corrupt or inconsistent."""


class ArtifactNotFound(ModelArtifactError):
    """An object of the artifact (pointer, manifest, weights) does not exist."""


class ManifestError(ModelArtifactError):
    """The manifest is not valid JSON or does not follow the schema."""


class IntegrityError(ModelArtifactError):
    """The weights do not have the hash the manifest records."""


class ArchitectureMismatch(ModelArtifactError):
    """The weights do not fit the architecture or class count the manifest names."""


class VersionExists(ModelArtifactError):
    """Publishing would overwrite an existing, immutable version."""
