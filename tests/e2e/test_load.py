"""Concurrent clients against the local endpoint: only right answers, and memory that levels off.

This is a bound check, not a benchmark: nothing here asserts a latency or a rate.
"""

from __future__ import annotations

import base64
import http.client
import json
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import pytest

CLIENTS = 8
REQUESTS_PER_CLIENT = 50
WARM_UP_REQUESTS_PER_CLIENT = 10
LOAD_TIMEOUT_S = 240  # generous: a busy 2-core machine; only a hang should hit it
# RSS may still grow a little after warm-up (allocator arenas of new threads, caches);
# a leak per request would grow it by far more over 400 requests.
RSS_SLACK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One request a client may send, and the class the model gives its image."""

    name: str
    content_type: str
    body: bytes
    expected_label: str


@dataclass(frozen=True)
class Outcome:
    case: Case
    status: int
    body: bytes


@pytest.fixture(scope="module")
def cases(examples, expected) -> list[Case]:
    """Every example image as raw bytes of its format, and every JPEG as JSON base64."""
    content_types = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
    raw = [
        Case(path.name, content_types[fmt], path.read_bytes(), expected(path)[0][0])
        for fmt, paths in examples.items()
        for path in paths
    ]
    as_json = [
        Case(
            f"{path.name} (JSON)",
            "application/json",
            json.dumps({"image": base64.b64encode(path.read_bytes()).decode()}).encode(),
            expected(path)[0][0],
        )
        for path in examples["jpeg"]
    ]
    return raw + as_json


def post(url: str, case: Case) -> Outcome:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", "/predict", body=case.body, headers={"Content-Type": case.content_type})
        response = connection.getresponse()
        return Outcome(case, response.status, response.read())
    finally:
        connection.close()


def run_clients(url: str, cases: list[Case], requests_per_client: int) -> list[Outcome]:
    """CLIENTS threads, each sending `requests_per_client` requests one after another."""

    def client(number: int) -> list[Outcome]:
        return [post(url, cases[(number + i) % len(cases)]) for i in range(requests_per_client)]

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(client, number) for number in range(CLIENTS)]
        done, not_done = wait(futures, timeout=LOAD_TIMEOUT_S)
        assert not not_done, f"{len(not_done)} clients did not finish within {LOAD_TIMEOUT_S} s"
    return [outcome for future in done for outcome in future.result()]


def wrong_answers(outcomes: list[Outcome]) -> list[str]:
    problems = []
    for outcome in outcomes:
        if outcome.status != 200:
            problems.append(f"{outcome.case.name}: HTTP {outcome.status} {outcome.body[:200]!r}")
            continue
        (result,) = json.loads(outcome.body)["results"]
        label = result["predictions"][0]["label"]
        if label != outcome.case.expected_label:
            problems.append(f"{outcome.case.name}: {label}, expected {outcome.case.expected_label}")
    return problems


def test_concurrent_clients_get_only_right_answers_and_memory_levels_off(server, cases):
    process = psutil.Process(server.process.pid)

    # Given a server that has already answered a round of concurrent requests
    warm_up = run_clients(server.url, cases, WARM_UP_REQUESTS_PER_CLIENT)
    assert wrong_answers(warm_up) == []
    rss_after_warm_up = process.memory_info().rss

    # When 8 clients send 50 requests each, at the same time
    outcomes = run_clients(server.url, cases, REQUESTS_PER_CLIENT)
    rss_after_load = process.memory_info().rss

    # Then every answer is a 200 with the model's own class, and memory did not keep growing
    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT
    assert wrong_answers(outcomes) == []
    growth = rss_after_load - rss_after_warm_up
    print(
        f"RSS after warm-up {rss_after_warm_up / 2**20:.0f} MiB, after load {rss_after_load / 2**20:.0f} MiB"
    )
    assert growth < RSS_SLACK_BYTES, f"RSS grew by {growth / 2**20:.0f} MiB over {len(outcomes)} requests"
    assert process.is_running() and server.process.poll() is None
