"""docs/openapi.yaml is a valid OpenAPI document and describes what the handler really does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from lambda_src import errors
from lambda_src.contract import DEFAULT_TOP_K
from lambda_src.predict_request import ACCEPTED_MEDIA_TYPES
from lambda_src.service import ROUTES, InferenceService
from lambda_src.settings import RuntimeSettings
from tests.support.events import api_gateway_event, body_of, json_event
from tests.support.images import b64, coloured_image, encode

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
PNG = encode(coloured_image("red", seed=50), "PNG")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return document


def schema_validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator for an OpenAPI 3.0 schema object whose #/components/... references resolve."""
    return jsonschema.Draft4Validator({**schema, "components": spec["components"]})


def response_spec(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = spec["paths"][path][method.lower()]["responses"]
    response: dict[str, Any] = responses[str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def assert_conforms(spec: dict[str, Any], response: dict[str, Any], path: str, method: str) -> None:
    documented = response_spec(spec, path, method, response["statusCode"])
    schema = documented["content"][response["headers"]["Content-Type"]]["schema"]
    schema_validator(spec, schema).validate(body_of(response))
    for header in documented.get("headers", {}):
        assert header in response["headers"], f"{header} is documented but missing"


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)


def test_it_documents_exactly_the_routes_the_handler_serves(spec: dict[str, Any]) -> None:
    documented = {path: {method.upper() for method in item} for path, item in spec["paths"].items()}
    assert documented == {path: {method} for path, method in ROUTES.items()}


def test_it_documents_the_handlers_content_types_defaults_and_limits(spec: dict[str, Any]) -> None:
    predict = spec["paths"]["/predict"]["post"]
    assert tuple(predict["requestBody"]["content"]) == ACCEPTED_MEDIA_TYPES
    (top_k,) = predict["parameters"]
    assert top_k["schema"]["default"] == DEFAULT_TOP_K
    batch = spec["components"]["schemas"]["PredictRequest"]["oneOf"][1]["properties"]["images"]
    # the batch limit is the function's to enforce (413), as on the deployed API: no schema maxItems (400)
    assert (
        "maxItems" not in batch
        and f"`MAX_BATCH_SIZE` ({RuntimeSettings().max_batch_size})" in batch["description"]
    )
    assert f"{RuntimeSettings().max_body_bytes:,}" in predict["description"]
    assert f"{RuntimeSettings().max_image_pixels:,}" in predict["description"]


def test_error_codes_are_exactly_the_handlers(spec: dict[str, Any]) -> None:
    code = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
    documented = set(code["anyOf"][0]["enum"])
    error_types: list[type[errors.ApiError]] = [errors.ApiError, *errors.ApiError.__subclasses__()]
    assert documented == {error_type.code for error_type in error_types}


def test_request_examples_are_accepted_by_the_handler(
    spec: dict[str, Any], service: InferenceService
) -> None:
    examples = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        response = service.handle(json_event(example["value"]))
        assert response["statusCode"] == 200, response["body"]
        assert len(body_of(response)["results"]) == len(example["value"].get("images", [None]))


@pytest.mark.parametrize(
    ("body", "schema_valid", "status"),
    [
        ({"image": "PNG"}, True, 200),
        ({"images": ["PNG", "PNG"]}, True, 200),
        ({"image": "PNG", "note": "extra fields are ignored"}, True, 200),
        ({"images": []}, False, 400),
        ({"images": ["PNG"] * 9}, True, 413),  # a limit, not a shape: MAX_BATCH_SIZE, documented as 413
        ({"image": ""}, False, 400),
        ({"image": 5}, False, 400),
        ({"image": "PNG", "images": ["PNG"]}, False, 400),
        ({}, False, 400),
    ],
)
def test_the_request_schema_accepts_the_shapes_the_handler_accepts(
    spec: dict[str, Any], service: InferenceService, body: dict[str, Any], schema_valid: bool, status: int
) -> None:
    real = {key: (b64(PNG) if value == "PNG" else value) for key, value in body.items()}
    if isinstance(real.get("images"), list):
        real["images"] = [b64(PNG) if item == "PNG" else item for item in real["images"]]
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema_validator(spec, schema).is_valid(real) is schema_valid
    assert service.handle(json_event(real))["statusCode"] == status


def test_success_responses_match_their_schemas(spec: dict[str, Any], service: InferenceService) -> None:
    cases = [
        ("/health", "GET", api_gateway_event("GET", "/health")),
        ("/predict", "POST", json_event({"image": b64(PNG)}, query={"top_k": "2"})),
        ("/predict", "POST", json_event({"images": [b64(PNG)] * 3})),
        ("/predict", "POST", api_gateway_event("POST", "/predict", body=PNG, content_type="image/png")),
    ]
    for path, method, event in cases:
        response = service.handle(event)
        assert response["statusCode"] == 200
        assert_conforms(spec, response, path, method)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (json_event({"image": "%%%"}), 400),
        (json_event({"images": [b64(PNG)] * 9}), 413),
        (api_gateway_event("POST", "/predict", body=b"GIF89a", content_type="image/gif"), 415),
    ],
)
def test_error_responses_match_their_schemas(
    spec: dict[str, Any], service: InferenceService, event: dict[str, Any], status: int
) -> None:
    response = service.handle(event)
    assert response["statusCode"] == status
    assert_conforms(spec, response, "/predict", "POST")


def test_unavailable_reasons_are_exactly_the_handlers(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["properties"]["reason"]["enum"] == [reason.value for reason in errors.UnavailableReason]
    assert "reason" not in error["required"]


def test_model_unavailable_matches_its_schema_and_headers(spec: dict[str, Any], make_service: Any) -> None:
    unavailable, _, _ = make_service("not-published-anywhere")
    for path, method in (("/health", "GET"), ("/predict", "POST")):
        response = unavailable.handle(
            json_event({"image": b64(PNG)}) if method == "POST" else api_gateway_event(method, path)
        )
        assert response["statusCode"] == 503
        assert_conforms(spec, response, path, method)


def test_unknown_routes_and_methods_match_the_documented_shared_responses(
    spec: dict[str, Any], service: InferenceService
) -> None:
    validator = schema_validator(spec, {"$ref": "#/components/schemas/Error"})
    not_found = service.handle(api_gateway_event("GET", "/metrics"))
    not_allowed = service.handle(api_gateway_event("GET", "/predict"))
    assert (not_found["statusCode"], not_allowed["statusCode"]) == (404, 405)
    for response in (not_found, not_allowed):
        validator.validate(body_of(response))
    assert set(spec["components"]["responses"]["MethodNotAllowed"]["headers"]) <= set(not_allowed["headers"])
