"""What a `POST /predict` asks for: image bytes and `top_k`, validated before any image is decoded.

Accepted bodies:
    application/json            {"image": "<base64>"} or {"images": ["<base64>", ...]}
    image/jpeg|png|webp         the image's bytes
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lambda_src.api_gateway import ApiRequest, check_body_size, read_body
from lambda_src.contract import DEFAULT_TOP_K, IMAGE_MEDIA_TYPES, JSON_MEDIA_TYPE
from lambda_src.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

ACCEPTED_MEDIA_TYPES = (JSON_MEDIA_TYPE, *IMAGE_MEDIA_TYPES)

_DATA_URL_PREFIX = re.compile(r"^data:[A-Za-z0-9.+/-]*(;[A-Za-z0-9=.+-]*)*;base64,")
_TOP_K = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class ImageInput:
    """One image to classify: how error messages name it, and its encoded bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class PredictRequest:
    images: tuple[ImageInput, ...]
    top_k: int


def parse_predict_request(request: ApiRequest, *, max_batch_size: int, max_body_bytes: int) -> PredictRequest:
    """The images and `top_k` of a predict request; a 4xx `ApiError` if anything is off."""
    top_k = parse_top_k(request.query)
    media_type = request.media_type()
    accepted = ", ".join(ACCEPTED_MEDIA_TYPES)
    if media_type is None:
        raise UnsupportedMediaType(f"the request has no Content-Type; send one of {accepted}")
    if media_type == JSON_MEDIA_TYPE:
        document = _json_body(request, max_body_bytes)
        return PredictRequest(images=images_from_json(document, max_batch_size=max_batch_size), top_k=top_k)
    if media_type in IMAGE_MEDIA_TYPES:
        data = read_body(request, max_bytes=max_body_bytes)
        if not data:
            raise BadRequest(f"the request body is empty; send the image's bytes as {media_type}")
        return PredictRequest(images=(ImageInput("the request body", data),), top_k=top_k)
    raise UnsupportedMediaType(f"Content-Type {media_type!r:.80} is not accepted; send one of {accepted}")


def parse_top_k(query: Mapping[str, str]) -> int:
    """`?top_k=`: a whole number of at least 1 (values above the class count mean every class)."""
    raw = query.get("top_k")
    if raw is None:
        return DEFAULT_TOP_K
    if not _TOP_K.fullmatch(raw) or int(raw) < 1:
        raise BadRequest(f"top_k must be a whole number from 1 to 999999999, got {raw!r:.40}")
    return int(raw)


def _json_body(request: ApiRequest, max_body_bytes: int) -> object:
    if request.is_base64_encoded:
        raw: str | bytes = read_body(request, max_bytes=max_body_bytes)
    else:
        check_body_size(request, max_bytes=max_body_bytes)
        raw = request.body or ""
    if not raw.strip():
        raise BadRequest(
            'the request body is empty; send {"image": "<base64>"} or {"images": ["<base64>", ...]}'
        )
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest("the request body is JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, over-long numbers
        raise BadRequest(f"the request body is not valid JSON ({error})") from None


def images_from_json(document: object, *, max_batch_size: int) -> tuple[ImageInput, ...]:
    """The base64 images of `{"image": ...}` or `{"images": [...]}`, decoded to bytes."""
    if not isinstance(document, dict):
        raise BadRequest('the JSON body must be an object: {"image": "<base64>"} or {"images": [...]}')
    if "image" in document and "images" in document:
        raise BadRequest('send either "image" or "images", not both')
    if "image" in document:
        return (ImageInput("image", decode_base64(document["image"], "image")),)
    if "images" not in document:
        raise BadRequest('the JSON body has no "image" or "images" field')
    values = document["images"]
    if not isinstance(values, list):
        raise BadRequest('"images" must be a list of base64 strings')
    if not values:
        raise BadRequest('"images" is empty; send at least one image')
    if len(values) > max_batch_size:
        raise PayloadTooLarge(f'"images" has {len(values)} images; at most {max_batch_size} per request')
    return tuple(
        ImageInput(f"images[{index}]", decode_base64(value, f"images[{index}]"))
        for index, value in enumerate(values)
    )


def decode_base64(value: object, name: str) -> bytes:
    """Standard base64 (with padding) to bytes; line breaks and a `data:...;base64,` prefix are allowed."""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a base64 string, not {_json_type(value)}")
    text = "".join(_DATA_URL_PREFIX.sub("", value, count=1).split())
    if not text:
        raise BadRequest(f"{name} is empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{name} is not valid base64 (standard alphabet, with padding)") from None


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
