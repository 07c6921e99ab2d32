"""The browser side of the local endpoint: a classify page, the API docs and the OpenAPI document.

- `GET /`: a page that sends an image to `POST /predict` like any client and shows the
  top labels (its script and styles under `/static/`, from local_endpoint/static/).
- `GET /docs`: Swagger UI (the assets of the pinned `swagger-ui-bundle` package, under
  `/docs/`) rendering `/openapi.yaml`, with "try it out" against this endpoint.
- `GET /openapi.yaml`: docs/openapi.yaml with its `servers` pointed at this endpoint.

Only the local endpoint serves these: the deployed API has its two routes and nothing
else. Nothing is loaded from another origin, so the pages work offline, and every
response carries a strict Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from swagger_ui_bundle import swagger_ui_path

from local_endpoint.gateway import HttpResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
OPENAPI_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"

PAGE_PATH = "/"
DOCS_PATH = "/docs"
OPENAPI_URL_PATH = "/openapi.yaml"

# The relative server URL resolves against the document's own URL, so "try it out" calls
# whatever host and port the browser used to reach this endpoint.
LOCAL_SERVERS = [{"url": "/", "description": "this local endpoint"}]

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}

# Scripts and styles only from files of this origin; images also from blob: (the page's
# preview of the chosen file) and data: (Swagger UI's icons); requests only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# URL path -> file. Fixed names only: nothing in a request picks a file path.
_FILES: dict[str, Path] = {
    PAGE_PATH: STATIC_DIR / "index.html",
    "/static/classify.js": STATIC_DIR / "classify.js",
    "/static/classify.css": STATIC_DIR / "classify.css",
    DOCS_PATH: STATIC_DIR / "docs.html",
    f"{DOCS_PATH}/": STATIC_DIR / "docs.html",
    f"{DOCS_PATH}/docs.js": STATIC_DIR / "docs.js",
    f"{DOCS_PATH}/swagger-ui.css": swagger_ui_path / "swagger-ui.css",
    f"{DOCS_PATH}/index.css": swagger_ui_path / "index.css",
    f"{DOCS_PATH}/swagger-ui-bundle.js": swagger_ui_path / "swagger-ui-bundle.js",
    f"{DOCS_PATH}/favicon-32x32.png": swagger_ui_path / "favicon-32x32.png",
}

WEB_PATHS = frozenset([*_FILES, OPENAPI_URL_PATH])


def handles(method: str, path: str) -> bool:
    """Whether this module answers the request (GET or HEAD of one of its paths)."""
    return method in {"GET", "HEAD"} and path in WEB_PATHS


def response_for(path: str) -> HttpResponse:
    """The response to `GET path`, for a path in WEB_PATHS."""
    if path == OPENAPI_URL_PATH:
        return _response(openapi_document(), "application/yaml; charset=utf-8")
    file = _FILES[path]
    return _response(file.read_bytes(), _CONTENT_TYPES[file.suffix])


def openapi_document() -> bytes:
    """docs/openapi.yaml with `servers` replaced by this endpoint (read per request: edits show)."""
    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    document["servers"] = LOCAL_SERVERS
    return yaml.dump(document, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True).encode("utf-8")


class _ReadableDumper(yaml.SafeDumper):
    """Writes multi-line strings (the descriptions) as `|` blocks, the way the document has them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_ReadableDumper.add_representer(str, _represent_str)


def _response(body: bytes, content_type: str) -> HttpResponse:
    headers = [
        ("Content-Type", content_type),
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ]
    return HttpResponse(200, headers, body)
