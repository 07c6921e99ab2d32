"""What a `POST /predict` asks for: image bytes and `top_k`, validated before any image is decoded.

Accepted bodies, read the same way whatever their media type (`api_gateway.read_body`: size
limit, base64 transport) and then parsed by it:
    application/json            {"image": "<base64>"} or {"images": ["<base64>", ...]}
    image/jpeg|png|webp         the image's bytes

This is the request's parse phase; decoding the images into pixels comes after it
(`ImageClassifier.input`, lambda_src.images).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lambda_src.api_gateway import ApiRequest, read_body
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
    media_type = accepted_media_type(request)
    body = read_body(request, max_bytes=max_body_bytes)
    if media_type == JSON_MEDIA_TYPE:
        images = images_from_json(json_document(body), max_batch_size=max_batch_size)
    elif body:
        images = (ImageInput("the request body", body),)
    else:
        raise BadRequest(f"the request body is empty; send the image's bytes as {media_type}")
    return PredictRequest(images=images, top_k=top_k)


def accepted_media_type(request: ApiRequest) -> str:
    """The request's media type if the API accepts it, else 415 (before the body is read)."""
    media_type = request.media_type()
    accepted = ", ".join(ACCEPTED_MEDIA_TYPES)
    if media_type is None:
        raise UnsupportedMediaType(f"the request has no Content-Type; send one of {accepted}")
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaType(f"Content-Type {media_type!r:.80} is not accepted; send one of {accepted}")
    return media_type


def parse_top_k(query: Mapping[str, str]) -> int:
    """`?top_k=`: a whole number of at least 1 (values above the class count mean every class)."""
    raw = query.get("top_k")
    if raw is None:
        return DEFAULT_TOP_K
    if not _TOP_K.fullmatch(raw) or int(raw) < 1:
        raise BadRequest(f"top_k must be a whole number from 1 to 999999999, got {raw!r:.40}")
    return int(raw)


def json_document(body: bytes) -> object:
    """The JSON document of a body (UTF-8, as JSON is sent); 400 if empty or not JSON."""
    if not body.strip():
        raise BadRequest(
            'the request body is empty; send {"image": "<base64>"} or {"images": ["<base64>", ...]}'
        )
    try:
        return json.loads(body)
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
