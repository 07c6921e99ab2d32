"""POST /predict and GET /health through real API Gateway REST proxy events, against a trained model.

Every accepted content type and encoding must give the scores of running the same
model directly on the same picture.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
import torch
from PIL import Image

from bench.events import json_image_event, lambda_context, raw_image_event
from lambda_src.images import decode_image
from lambda_src.service import InferenceService
from tests.support.events import api_gateway_event, body_of, json_event
from tests.support.images import b64, coloured_image, encode
from tests.support.telemetry import CapturedTelemetry
from tests.support.tiny_model import LABELS, PREPROCESSING, reference_probabilities

RED_PNG = encode(coloured_image("red", seed=1), "PNG")
GREEN_JPEG = encode(coloured_image("green", seed=2), "JPEG", quality=95)
BLUE_WEBP = encode(coloured_image("blue", seed=3), "WEBP", lossless=True)
IMAGES = {"image/png": RED_PNG, "image/jpeg": GREEN_JPEG, "image/webp": BLUE_WEBP}
EXPECTED_LABEL = {"image/png": "red", "image/jpeg": "green", "image/webp": "blue"}


def assert_matches_model(result: dict, model: torch.nn.Module, picture: bytes | Image.Image) -> None:
    """The response's ranking equals the model's own, run directly on the same picture."""
    if isinstance(picture, Image.Image):
        picture = encode(picture, "PNG")
    expected = reference_probabilities(model, picture)
    predictions = result["predictions"]
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    for prediction in predictions:
        assert prediction["label"] == LABELS[prediction["index"]]
        assert prediction["score"] == pytest.approx(expected[prediction["index"]].item(), abs=1e-5)
    assert predictions[0]["index"] == int(expected.argmax())


@pytest.mark.parametrize("content_type", sorted(IMAGES))
@pytest.mark.parametrize("base64_encoded", [True, False], ids=["base64", "text"])
def test_raw_image_body_is_classified_like_the_model_does(
    service: InferenceService, tiny_model: torch.nn.Module, content_type: str, base64_encoded: bool
) -> None:
    data = IMAGES[content_type]
    # Without base64, a binary body travels as text whose characters are the bytes (Latin-1).
    body = data if base64_encoded else data.decode("latin-1")
    response = service.handle(
        api_gateway_event(
            "POST", "/predict", body=body, content_type=content_type, base64_encoded=base64_encoded
        )
    )
    assert response["statusCode"] == 200, response["body"]
    payload = body_of(response)
    assert payload["model"] == {"name": "colours", "version": "v1"}
    assert payload["top_k"] == 3  # the default 5, capped at the model's 3 classes
    (result,) = payload["results"]
    assert_matches_model(result, tiny_model, data)
    assert result["predictions"][0]["label"] == EXPECTED_LABEL[content_type]


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "base64"])
def test_json_single_image_and_batch_keep_one_response_shape(
    service: InferenceService, tiny_model: torch.nn.Module, base64_encoded: bool
) -> None:
    single = service.handle(json_event({"image": b64(RED_PNG)}, base64_encoded=base64_encoded))
    batch = service.handle(
        json_event({"images": [b64(data) for data in IMAGES.values()]}, base64_encoded=base64_encoded)
    )
    assert single["statusCode"] == batch["statusCode"] == 200
    assert body_of(single).keys() == body_of(batch).keys() == {"model", "top_k", "results"}
    assert_matches_model(body_of(single)["results"][0], tiny_model, RED_PNG)
    results = body_of(batch)["results"]
    assert len(results) == 3
    for result, data in zip(results, IMAGES.values(), strict=True):
        assert_matches_model(result, tiny_model, data)
    assert [r["predictions"][0]["label"] for r in results] == [EXPECTED_LABEL[t] for t in IMAGES]


@pytest.mark.parametrize(("top_k", "expected_length"), [("1", 1), ("2", 2), ("3", 3), ("50", 3), ("007", 3)])
def test_top_k_limits_the_ranking_and_values_above_the_class_count_return_every_class(
    service: InferenceService, top_k: str, expected_length: int
) -> None:
    response = service.handle(json_event({"image": b64(RED_PNG)}, query={"top_k": top_k}))
    payload = body_of(response)
    assert payload["top_k"] == expected_length
    assert len(payload["results"][0]["predictions"]) == expected_length


@pytest.mark.parametrize(
    "header",
    [
        ("content-type", "application/json"),
        ("CONTENT-TYPE", "Application/JSON"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("content-Type", "application/json;charset=UTF-8"),
    ],
)
def test_header_names_in_any_case_and_content_type_parameters_are_understood(
    service: InferenceService, header: tuple[str, str]
) -> None:
    event = api_gateway_event(
        "POST", "/predict", body=json.dumps({"image": b64(RED_PNG)}), headers=dict([header])
    )
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    assert service.handle(event)["statusCode"] == 200


def test_multi_value_headers_alone_are_enough(service: InferenceService) -> None:
    event = api_gateway_event("POST", "/predict", body=RED_PNG, content_type="image/png")
    event["headers"] = None
    assert service.handle(event)["statusCode"] == 200


def test_base64_with_line_breaks_and_data_url_prefix_is_accepted(service: InferenceService) -> None:
    wrapped = "\n".join(
        b64(RED_PNG)[i : i + 76] for i in range(0, len(b64(RED_PNG)), 76)
    )  # `base64` CLI output
    data_url = "data:image/png;base64," + b64(RED_PNG)
    for value in (wrapped, data_url):
        response = service.handle(json_event({"image": value}))
        assert response["statusCode"] == 200, response["body"]


def test_routing_uses_the_api_resource_so_stage_and_base_paths_do_not_matter(
    service: InferenceService,
) -> None:
    behind_custom_domain = api_gateway_event("GET", "/health")
    behind_custom_domain["path"] = "/inference/health"  # base path mapping: resource stays /health
    proxy_resource = api_gateway_event("GET", "/health")
    proxy_resource["resource"] = "/{proxy+}"
    trailing_slash = api_gateway_event("GET", "/health/")
    for event in (behind_custom_domain, proxy_resource, trailing_slash):
        assert service.handle(event)["statusCode"] == 200


def test_health_names_the_model_it_serves(service: InferenceService) -> None:
    response = service.handle(api_gateway_event("GET", "/health"))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["isBase64Encoded"] is False
    assert body_of(response) == {
        "status": "ok",
        "model": {"name": "colours", "version": "v1", "architecture": "resnet18", "num_classes": 3},
    }


def _two_colour_picture(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half green: the model's scores depend on which way up it is."""
    picture = coloured_image("red", size=size, seed=7)
    picture.paste(coloured_image("green", size=(size[0] // 2, size[1]), seed=8), (size[0] // 2, 0))
    return picture


def test_exif_orientation_is_applied_before_classification(
    service: InferenceService, tiny_model: torch.nn.Module
) -> None:
    upright = _two_colour_picture((64, 44))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(stored, "PNG", exif=exif)
    response = service.handle(api_gateway_event("POST", "/predict", body=data, content_type="image/png"))
    assert_matches_model(body_of(response)["results"][0], tiny_model, upright)
    decoded = decode_image(data, max_pixels=10_000, min_side=PREPROCESSING.resize)
    assert decoded.size == upright.size
    assert decoded.tobytes() == upright.tobytes()


def _alpha_picture() -> tuple[Image.Image, Image.Image]:
    """A red picture whose left half is transparent, and what it looks like on white."""
    rgba = coloured_image("red", size=(48, 48), seed=9).convert("RGBA")
    alpha = Image.new("L", (48, 48), 255)
    alpha.paste(0, (0, 0, 24, 48))
    rgba.putalpha(alpha)
    on_white = rgba.convert("RGB")
    on_white.paste((255, 255, 255), (0, 0, 24, 48))
    return rgba, on_white


def _sixteen_bit_grey() -> tuple[bytes, Image.Image]:
    grey = Image.new("I;16", (40, 40), 30000)
    return encode(grey, "PNG"), Image.new("RGB", (40, 40), (117, 117, 117))  # 30000 / 256


@pytest.mark.parametrize("case", ["grayscale", "palette", "alpha", "webp-alpha", "cmyk", "16-bit-grey"])
def test_image_modes_are_converted_to_the_rgb_picture_a_person_sees(
    service: InferenceService, tiny_model: torch.nn.Module, case: str
) -> None:
    blue = coloured_image("blue", seed=10)
    if case == "grayscale":
        data, seen = encode(blue.convert("L"), "PNG"), blue.convert("L").convert("RGB")
    elif case == "palette":
        palette = blue.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        data, seen = encode(palette, "PNG"), palette.convert("RGB")
    elif case == "alpha":
        rgba, seen = _alpha_picture()
        data = encode(rgba, "PNG")
    elif case == "webp-alpha":
        rgba, seen = _alpha_picture()
        data = encode(rgba, "WEBP", lossless=True)
    elif case == "cmyk":
        data = encode(blue.convert("CMYK"), "JPEG", quality=95)
        seen = Image.open(io.BytesIO(data)).convert("RGB")
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
    else:
        data, seen = _sixteen_bit_grey()
    response = service.handle(json_event({"image": b64(data)}))
    assert response["statusCode"] == 200, response["body"]
    assert_matches_model(body_of(response)["results"][0], tiny_model, seen)
    if case == "cmyk":
        assert body_of(response)["results"][0]["predictions"][0]["label"] == "blue"


def test_large_jpegs_are_decoded_at_a_reduced_scale_that_still_covers_the_resize() -> None:
    photo = encode(coloured_image("green", size=(640, 480), seed=11), "JPEG", quality=90)
    image = decode_image(photo, max_pixels=10_000_000, min_side=PREPROCESSING.resize)
    assert image.mode == "RGB"
    assert image.size == (160, 120)  # 1/4 scale, never 1/8 (80x60 would still cover 2 x resize = 80)
    camera = encode(coloured_image("green", size=(2000, 1500), seed=11), "JPEG", quality=90)
    assert decode_image(camera, max_pixels=10_000_000, min_side=300).size == (1000, 750)  # 1/2: >= 2 x 300
    assert decode_image(camera, max_pixels=10_000_000, min_side=300, reduce=False).size == (2000, 1500)
    small = encode(coloured_image("green", size=(64, 48), seed=11), "JPEG")
    assert decode_image(small, max_pixels=10_000_000, min_side=PREPROCESSING.resize).size == (64, 48)


def test_large_photo_is_still_classified(service: InferenceService) -> None:
    photo = encode(coloured_image("blue", size=(1600, 1200), seed=12), "JPEG", quality=90)
    response = service.handle(api_gateway_event("POST", "/predict", body=photo, content_type="image/jpeg"))
    assert body_of(response)["results"][0]["predictions"][0]["label"] == "blue"


def test_each_request_logs_one_json_line_with_ids_route_status_version_and_latency_split(
    service: InferenceService, telemetry: CapturedTelemetry
) -> None:
    event = json_event({"images": [b64(RED_PNG), b64(GREEN_JPEG)]})
    context = type("Context", (), {"aws_request_id": "lambda-request-1"})()
    service.handle(event, context)
    line = telemetry.logs("request")[-1]
    assert line["request_id"] == "lambda-request-1"
    assert line["api_request_id"] == event["requestContext"]["requestId"]
    assert (line["method"], line["route"], line["status"]) == ("POST", "/predict", 200)
    assert (line["model_name"], line["model_version"], line["images"]) == ("colours", "v1", 2)
    assert set(line["latency_ms"]) == {"total", "parse", "decode", "preprocess", "inference"}
    assert line["latency_ms"]["total"] >= line["latency_ms"]["inference"] > 0
    phases = sum(line["latency_ms"][phase] for phase in ("parse", "decode", "preprocess", "inference"))
    assert line["latency_ms"]["total"] >= phases - 0.4  # apart, never counted twice (each rounded)
    assert b64(RED_PNG)[:40] not in telemetry.buffer.getvalue()  # bodies are never logged


def test_each_request_emits_latency_and_error_metrics_in_embedded_metric_format(
    service: InferenceService, telemetry: CapturedTelemetry
) -> None:
    service.handle(json_event({"image": b64(RED_PNG)}))
    service.handle(api_gateway_event("GET", "/missing"))
    success, client_error = telemetry.metrics()[-2:]
    (directive,) = success["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "PyTorchInference"
    assert directive["Dimensions"] == [["service"]]
    assert success["service"] == telemetry.service
    names = {metric["Name"] for metric in directive["Metrics"]}
    assert {
        "Latency",
        "ParseLatency",
        "DecodeLatency",
        "PreprocessLatency",
        "InferenceLatency",
        "ImagesClassified",
    } <= names
    assert (success["ClientErrors"], success["ServerErrors"], success["ImagesClassified"]) == (
        [0.0],
        [0.0],
        [1.0],
    )
    assert (client_error["ClientErrors"], client_error["ServerErrors"]) == ([1.0], [0.0])


def test_with_cors_configured_every_response_allows_the_origin(
    make_service: Callable[..., tuple[InferenceService, CapturedTelemetry, list[float]]],
) -> None:
    service, _, _ = make_service("colours", cors_allow_origin="https://app.example.com")
    for event in (json_event({"image": b64(RED_PNG)}), api_gateway_event("GET", "/nowhere")):
        assert service.handle(event)["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_the_benchmarks_events_are_answered_like_the_apis(
    service: InferenceService, tiny_model: torch.nn.Module
) -> None:
    # The bench measures the handler on events built by the local endpoint's gateway code.
    raw = service.handle(raw_image_event(GREEN_JPEG), lambda_context())
    batch = service.handle(json_image_event([RED_PNG, BLUE_WEBP]), lambda_context())
    assert raw["statusCode"] == batch["statusCode"] == 200, (raw["body"], batch["body"])
    assert_matches_model(body_of(raw)["results"][0], tiny_model, GREEN_JPEG)
    assert [r["predictions"][0]["label"] for r in body_of(batch)["results"]] == ["red", "blue"]


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "base64"])
def test_a_json_body_may_carry_any_unicode_beside_the_image(
    service: InferenceService, base64_encoded: bool
) -> None:
    # Given a JSON body with non-ASCII text next to the image, as text (API Gateway decoded it
    # from UTF-8) or base64 (the UTF-8 bytes as sent)
    text = json.dumps({"image": b64(RED_PNG), "note": "café 漢字"}, ensure_ascii=False)
    body: str | bytes = text.encode("utf-8") if base64_encoded else text
    event = api_gateway_event(
        "POST", "/predict", body=body, content_type="application/json", base64_encoded=base64_encoded
    )
    # When it is answered, then the body reader gave the JSON parser the bytes that were sent
    response = service.handle(event)
    assert response["statusCode"] == 200, response["body"]
    assert body_of(response)["results"][0]["predictions"][0]["label"] == "red"


def test_reading_the_request_and_decoding_its_images_are_measured_apart(
    service: InferenceService, telemetry: CapturedTelemetry
) -> None:
    service.handle(json_event({"images": [b64(RED_PNG), b64(GREEN_JPEG)]}))
    line = telemetry.logs("request")[-1]
    metrics = telemetry.metrics()[-1]
    assert line["latency_ms"]["parse"] > 0 and line["latency_ms"]["decode"] > 0
    assert metrics["ParseLatency"] == [line["latency_ms"]["parse"]]
    assert metrics["DecodeLatency"] == [line["latency_ms"]["decode"]]
