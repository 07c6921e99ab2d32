"""The documentation site: every page in the nav, and the tables that are rendered from code or results.

The settings table is rendered from the declarations in stacks/config.py, the benchmark tables
from bench/results/results.json (`python -m bench.report`) and engines.json (`python -m
bench.engines --report`); a page that no longer holds what its source renders fails here.
`make lint` builds the site with `mkdocs build --strict`, which fails on broken links and
anchors; the build test below checks the OpenAPI page really shows the API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.engines import report as engines_report
from bench.report import markdown_report, sizing_table
from stacks.config import CONTEXT_KEYS, settings_table

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
RESULTS = REPO_ROOT / "bench" / "results" / "results.json"
ENGINE_RESULTS = REPO_ROOT / "bench" / "results" / "engines.json"


class _ConfigLoader(yaml.SafeLoader):
    """mkdocs.yml as data: tags such as `!!python/name:` (Material's custom fences) read as null."""


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
_ConfigLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def nav_pages(entries: list[Any]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        target = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(target, list):
            pages += nav_pages(target)
        elif not str(target).startswith(("http://", "https://")):
            pages.append(str(target))
    return pages


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_markdown_file_under_docs_is_in_the_nav_and_every_nav_entry_exists() -> None:
    # Given the site's configuration and the Markdown files under docs/
    config = yaml.load((REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_ConfigLoader)
    in_nav = nav_pages(config["nav"])
    on_disk = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    # Then each file is reachable from the navigation, once, and the navigation names no missing page
    assert sorted(set(on_disk) - set(in_nav)) == [], "pages missing from the nav in mkdocs.yml"
    assert sorted(set(in_nav) - set(on_disk)) == [], "nav entries without a page under docs/"
    assert len(in_nav) == len(set(in_nav)), "a page listed twice in the nav"


def test_the_deploy_page_documents_every_setting() -> None:
    deploy = page("deploy.md")
    missing = [key for key in CONTEXT_KEYS if f"`{key}`" not in deploy]
    assert missing == []


def test_the_deploy_pages_settings_table_is_the_one_rendered_from_the_declarations() -> None:
    # The table shows each key's declared default, allowed values (with units) and help text.
    deploy = page("deploy.md")
    assert settings_table() in deploy
    assert deploy.count("| key | default | allowed | what it sets |") == 1


def test_the_benchmark_pages_hold_the_tables_rendered_from_the_committed_results() -> None:
    # Given the tables `python -m bench.report` renders from the committed results
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    sizing = sizing_table(results["models"])
    blocks = markdown_report(results).split("\n\n")
    # Then the memory-sizing table is on the sizing page and every other title and table on the
    # benchmarks page, as rendered
    assert sizing in blocks
    assert sizing in page("sizing.md")
    benchmarks = page("benchmarks.md")
    missing = [
        block.splitlines()[0]
        for block in blocks
        if block not in (sizing, "**Memory sizing**") and block not in benchmarks
    ]
    assert missing == []
    assert "**Targets**" in benchmarks


def test_the_benchmark_page_holds_the_engine_tables_rendered_from_the_committed_engine_results() -> None:
    # Given the tables `python -m bench.engines --report` renders from the committed engines.json
    blocks = engines_report(json.loads(ENGINE_RESULTS.read_text(encoding="utf-8"))).split("\n\n")
    # Then every one of them is on the benchmarks page, as rendered
    benchmarks = page("benchmarks.md")
    assert [block.splitlines()[0] for block in blocks if block not in benchmarks] == []


def test_the_site_builds_strictly_and_its_openapi_page_shows_every_operation(tmp_path: Path) -> None:
    # Given the OpenAPI document's operations
    spec = yaml.safe_load(page("openapi.yaml"))
    operations = [(method.upper(), route) for route, item in spec["paths"].items() for method in item]
    assert ("POST", "/predict") in operations
    assert ("GET", "/health") in operations
    # When the site is built as `make lint` builds it
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr
    # Then the OpenAPI page renders each operation with its method, route and summary
    html = (tmp_path / "openapi" / "index.html").read_text(encoding="utf-8")
    for method, route in operations:
        summary = spec["paths"][route][method.lower()]["summary"]
        assert f'<span class="http-{method.lower()}">{method}</span> {route}' in html, (method, route)
        assert summary in html
    # and every page of the nav became a page of the site
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "deploy" / "index.html").is_file()
    # with the files the pages link to
    for name in ("openapi.yaml", "batch-result.schema.json", "classify-page.png"):
        assert (tmp_path / name).is_file(), name
