"""The local endpoint's browser routes over real HTTP: what they serve, and what they leave to the API.

A recording function stands behind the server: the page, the docs and the OpenAPI
document must be answered without invoking it, and every other request must reach it.
The pages in a real browser are tested in tests/browser/.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from lambda_src.contract import HEALTH_PATH, PREDICT_PATH
from local_endpoint import web
from local_endpoint.server import LocalEndpoint


@pytest.fixture
def invoked() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def endpoint(invoked: list[dict[str, Any]]) -> Iterator[LocalEndpoint]:
    def function(event: dict[str, Any], context: Any) -> dict[str, Any]:
        invoked.append(event)
        return {"statusCode": 404, "body": '{"error": {"code": "not_found", "message": "no route"}}'}

    server = LocalEndpoint(("127.0.0.1", 0), function, log=lambda _: None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def send(server: LocalEndpoint, method: str, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=10)
    connection.request(method, path)
    response = connection.getresponse()
    return response, response.read()


def get(server: LocalEndpoint, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    return send(server, "GET", path)


@pytest.mark.parametrize("path", sorted(web.WEB_PATHS))
def test_each_page_and_asset_is_served_without_invoking_the_function(endpoint, invoked, path):
    response, body = get(endpoint, path)

    assert response.status == 200
    assert body
    assert response.headers["Content-Security-Policy"] == web.CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert invoked == []


def test_head_answers_the_headers_alone(endpoint, invoked):
    response, body = send(endpoint, "HEAD", "/")

    assert response.status == 200
    assert body == b""
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(response.headers["Content-Length"]) > 0
    assert invoked == []


def test_a_query_string_does_not_change_what_is_served(endpoint):
    _, plain = get(endpoint, "/")
    _, with_query = get(endpoint, "/?from=bookmark")

    assert with_query == plain


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/"),
        ("GET", "/docs/swagger-ui.js.map"),
        ("GET", "/docs/../local_endpoint/web.py"),
        ("GET", "/static/../web.py"),
        ("GET", "/static/"),
        ("GET", "/index.html"),
        ("DELETE", "/openapi.yaml"),
    ],
)
def test_anything_else_goes_to_the_function(endpoint, invoked, method, path):
    response, _ = send(endpoint, method, path)

    assert response.status == 404
    assert [event["httpMethod"] for event in invoked] == [method]


def test_the_openapi_document_is_the_repositorys_with_this_endpoint_as_its_server(endpoint):
    response, body = get(endpoint, "/openapi.yaml")
    served = yaml.safe_load(body)
    original = yaml.safe_load(web.OPENAPI_PATH.read_text())

    assert response.headers["Content-Type"] == "application/yaml; charset=utf-8"
    assert served == {**original, "servers": web.LOCAL_SERVERS}
    validate(served)


@pytest.mark.parametrize("page", ["/", "/docs"])
def test_pages_load_only_what_this_endpoint_serves(endpoint, page):
    _, html = get(endpoint, page)
    references = re.findall(r'(?:src|href)="([^"]*)"', html.decode())

    assert references
    for reference in references:
        assert reference in web.WEB_PATHS or reference == "data:,", reference


def test_no_page_hides_a_route_of_the_api():
    assert web.WEB_PATHS.isdisjoint({PREDICT_PATH, HEALTH_PATH})
