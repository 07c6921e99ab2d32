"""The Node.js range the CDK CLI runs on is declared where npm and nvm read it, and the docs say it."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_json_declares_the_supported_node_range_and_nvmrc_picks_a_version_in_it() -> None:
    engines = json.loads((ROOT / "package.json").read_text())["engines"]["node"]
    assert engines == ">=22 <25"  # Node 20 is past its end of life: the CDK CLI warns about it
    lock_root = json.loads((ROOT / "package-lock.json").read_text())["packages"][""]
    assert lock_root["engines"]["node"] == engines
    nvmrc = (ROOT / ".nvmrc").read_text().strip()
    assert re.fullmatch(r"\d+", nvmrc) and 22 <= int(nvmrc) < 25


def test_the_set_up_docs_name_the_node_range() -> None:
    for page in ("docs/getting-started.md", "README.md"):
        text = (ROOT / page).read_text()
        assert "Node.js 22 or 24" in text and ".nvmrc" in text, page
