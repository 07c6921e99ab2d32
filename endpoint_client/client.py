"""A client for the endpoint: every HTTP call to it goes through here.

    from endpoint_client.client import predict
    response = predict("https://abc.execute-api.eu-west-1.amazonaws.com/prod/", "cat.jpg", auth="iam")

`predict` sends an image as raw bytes (Content-Type from the image's format) or as
the JSON `{"image": "<base64>"}` body; `health` asks which model is served. Both
take the same path: one request builder, one SigV4 signer (botocore, with the
caller's AWS credentials, for `auth="iam"`), the API key in its header for
`auth="api_key"`, and one error parser: any non-2xx answer raises EndpointError
with the server's message.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from lambda_src.contract import (
    API_KEY_HEADER,
    HEALTH_PATH,
    JPEG_MEDIA_TYPE,
    JSON_MEDIA_TYPE,
    PNG_MEDIA_TYPE,
    PREDICT_PATH,
    WEBP_MEDIA_TYPE,
    AuthMode,
)

SIGV4_SERVICE = "execute-api"
DEFAULT_TIMEOUT_SECONDS = 35.0  # a little above API Gateway's 29 s integration timeout
USER_AGENT = "pytorch-lambda-inference-client/1"
# The first release spelled the API key mode `api-key`; it still works, with a warning.
DEPRECATED_AUTH_SPELLINGS = {"api-key": AuthMode.API_KEY}

_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# The formats the API accepts, by how their bytes start: (offset, magic bytes) marks that all match.
_SIGNATURES: tuple[tuple[tuple[tuple[int, bytes], ...], str], ...] = (
    (((0, b"\xff\xd8\xff"),), JPEG_MEDIA_TYPE),
    (((0, b"\x89PNG\r\n\x1a\n"),), PNG_MEDIA_TYPE),
    (((0, b"RIFF"), (8, b"WEBP")), WEBP_MEDIA_TYPE),
)


class EndpointError(Exception):
    """The request failed: `status` is the HTTP status, or None if no answer came back.

    `message` is the whole sentence; `code` and `detail` are the server's own error
    code and message, when it answered.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PreparedRequest:
    """Exactly what goes on the wire (kept separate so it can be inspected and tested)."""

    url: str
    headers: dict[str, str]
    body: bytes = b""
    method: str = "POST"


def auth_mode(value: str) -> AuthMode:
    """`value` as an AuthMode (iam, api_key, none); the old `api-key` still works, with a warning."""
    if value in DEPRECATED_AUTH_SPELLINGS:
        mode = DEPRECATED_AUTH_SPELLINGS[value]
        # stacklevel 4: the code that called predict() or health(), past the request builder
        warnings.warn(f"auth {value!r} is deprecated: use {mode.value!r}", DeprecationWarning, stacklevel=4)
        return mode
    try:
        return AuthMode(value)
    except ValueError:
        choices = ", ".join(mode.value for mode in AuthMode)
        raise EndpointError(f"auth must be one of {choices}, got {value!r}") from None


def image_content_type(data: bytes) -> str:
    """The contract's media type of a JPEG, PNG or WebP from the bytes themselves, or EndpointError."""
    for marks, media_type in _SIGNATURES:
        if all(data.startswith(magic, offset) for offset, magic in marks):
            return media_type
    raise EndpointError(
        "the file is not a JPEG, PNG or WebP image (the formats the endpoint accepts); "
        "give --content-type to send it anyway"
    )


def route_url(endpoint: str, route: str, query: dict[str, Any] | None = None) -> str:
    """The URL of `route` (e.g. /predict) for an API base URL (the stack's EndpointUrl) or the route's URL."""
    parts = urlsplit(endpoint)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise EndpointError(f"{endpoint!r} is not an http(s) URL")
    path = parts.path if parts.path.endswith(route) else parts.path.rstrip("/") + route
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query or {}), ""))


def predict_url(endpoint: str, top_k: int | None = None) -> str:
    """The POST /predict URL for an API base URL or a /predict URL."""
    return route_url(endpoint, PREDICT_PATH, {"top_k": top_k} if top_k is not None else None)


def region_from_url(url: str) -> str | None:
    """The AWS region in an execute-api host name, if it is one."""
    match = _EXECUTE_API_HOST.search(urlsplit(url).hostname or "")
    return match.group(1) if match else None


def build_request(
    endpoint: str,
    image: bytes,
    *,
    as_json: bool = False,
    content_type: str | None = None,
    top_k: int | None = None,
    auth: str = AuthMode.NONE,
    api_key: str | None = None,
    region: str | None = None,
    credentials: Any = None,
) -> PreparedRequest:
    """The URL, headers and body of a predict request, signed or keyed as `auth` says."""
    mode = auth_mode(auth)
    if top_k is not None and top_k < 1:
        raise EndpointError(f"top_k must be at least 1, got {top_k}")
    url = predict_url(endpoint, top_k)
    if as_json:
        body = json.dumps({"image": base64.b64encode(image).decode("ascii")}).encode("utf-8")
        headers = {"Content-Type": JSON_MEDIA_TYPE}
    else:
        body = image
        headers = {"Content-Type": content_type or image_content_type(image)}
    request = PreparedRequest(url=url, headers=headers, body=body)
    return authorize(request, mode, api_key=api_key, region=region, credentials=credentials)


def build_health_request(
    endpoint: str,
    *,
    auth: str = AuthMode.NONE,
    api_key: str | None = None,
    region: str | None = None,
    credentials: Any = None,
) -> PreparedRequest:
    """The GET /health request, signed or keyed as `auth` says."""
    request = PreparedRequest(url=route_url(endpoint, HEALTH_PATH), headers={}, method="GET")
    return authorize(request, auth_mode(auth), api_key=api_key, region=region, credentials=credentials)


def authorize(
    request: PreparedRequest,
    auth: AuthMode,
    *,
    api_key: str | None = None,
    region: str | None = None,
    credentials: Any = None,
) -> PreparedRequest:
    """`request` asking for JSON and carrying what `auth` needs: a SigV4 signature, an API key, or nothing."""
    request = replace(request, headers={**request.headers, "Accept": JSON_MEDIA_TYPE})
    if auth == AuthMode.API_KEY:
        if not api_key:
            raise EndpointError(f"auth {AuthMode.API_KEY} needs a key: give --api-key or set API_KEY")
        return replace(request, headers={**request.headers, API_KEY_HEADER: api_key})
    if auth == AuthMode.IAM:
        return replace(request, headers=sign_sigv4(request, region=region, credentials=credentials))
    return request


def sign_sigv4(
    request: PreparedRequest, *, region: str | None = None, credentials: Any = None
) -> dict[str, str]:
    """The request's headers plus the SigV4 headers botocore computes for it."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session()
    region = region or region_from_url(request.url) or session.region_name
    if not region:
        raise EndpointError(
            "cannot tell the AWS region from the URL (not an execute-api host): give --region"
        )
    credentials = credentials or session.get_credentials()
    if credentials is None:
        raise EndpointError(
            "auth iam needs AWS credentials and none were found: configure them (aws configure, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    aws_request = AWSRequest(
        method=request.method, url=request.url, data=request.body or None, headers=dict(request.headers)
    )
    SigV4Auth(credentials.get_frozen_credentials(), SIGV4_SERVICE, region).add_auth(aws_request)
    return dict(aws_request.headers.items())


def send(request: PreparedRequest, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """Send the request; the decoded JSON answer, or EndpointError with the server's message."""
    http_request = urllib.request.Request(  # noqa: S310 - route_url() allows http(s) only
        request.url,
        data=request.body if request.method != "GET" else None,
        headers={"User-Agent": USER_AGENT, **request.headers},
        method=request.method,
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as error:
        raise error_from_response(error.code, error.read()) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise EndpointError(f"cannot reach {request.url}: {reason}") from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EndpointError(f"the endpoint answered with something that is not JSON: {raw[:200]!r}") from None


def error_from_response(status: int, raw: bytes) -> EndpointError:
    """An EndpointError from the API's `{"error": {code, message}}` or API Gateway's `{"message": ...}`."""
    code, detail = "", raw[:300].decode("utf-8", "replace").strip()
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            code, detail = str(error.get("code", "")), str(error.get("message", detail))
        elif "message" in document or "Message" in document:
            detail = str(document.get("message", document.get("Message")))
    hint = ""
    if status == 403 and "Missing Authentication Token" in detail:
        hint = " (the API may need --auth iam or --auth api_key, or the URL's path is wrong)"
    label = f"{status} {code}".strip()
    return EndpointError(
        f"the endpoint answered {label}: {detail}{hint}", status=status, code=code, detail=detail
    )


def predict(
    endpoint: str,
    image: bytes | Path | str,
    *,
    as_json: bool = False,
    content_type: str | None = None,
    top_k: int | None = None,
    auth: str = AuthMode.NONE,
    api_key: str | None = None,
    region: str | None = None,
    credentials: Any = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Send one image (bytes or a file path) to the endpoint's /predict; return its JSON answer."""
    data = image if isinstance(image, bytes) else _read_image(Path(image))
    request = build_request(
        endpoint,
        data,
        as_json=as_json,
        content_type=content_type,
        top_k=top_k,
        auth=auth,
        api_key=api_key,
        region=region,
        credentials=credentials,
    )
    response: dict[str, Any] = send(request, timeout=timeout)
    return response


def health(
    endpoint: str,
    *,
    auth: str = AuthMode.NONE,
    api_key: str | None = None,
    region: str | None = None,
    credentials: Any = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Any:
    """GET the endpoint's /health; return its JSON answer (the served model, when it is up)."""
    request = build_health_request(
        endpoint, auth=auth, api_key=api_key, region=region, credentials=credentials
    )
    return send(request, timeout=timeout)


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise EndpointError(f"cannot read {path}: {error.strerror}") from None


def format_predictions(response: dict[str, Any]) -> str:
    """The answer as a few readable lines: model, then label and score per rank."""
    model = response.get("model", {})
    lines = [f"model {model.get('name', '?')} version {model.get('version', '?')}"]
    for number, result in enumerate(response.get("results", []), start=1):
        if len(response.get("results", [])) > 1:
            lines.append(f"image {number}:")
        for rank, prediction in enumerate(result.get("predictions", []), start=1):
            label, score = prediction.get("label", "?"), float(prediction.get("score", 0))
            lines.append(f"  {rank}. {label:<20} {score:.4f}")
    return "\n".join(lines)
