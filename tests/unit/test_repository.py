"""Repository hygiene: the LICENSE matches what pyproject declares, and the pre-commit hooks are
local commands from the project's own venv that work on this tree (committing fetches nothing)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_license_is_the_apache_2_text_pyproject_declares() -> None:
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert re.search(r"^\s*Apache License\s+Version 2\.0, January 2004", text)
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert text.rstrip().endswith("limitations under the License.")
    # The full text, not an excerpt: its nine sections and the appendix.
    assert all(f"{n}. " in text for n in range(1, 10)) and "APPENDIX" in text


def hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_pre_commit_hooks_are_local_commands_of_the_venv() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {hook["id"] for hook in hooks()} >= {"ruff", "ruff-format", "mypy"}
    for hook in hooks():
        assert hook["language"] == "system", hook["id"]
        assert shlex.split(hook["entry"])[0].startswith(".venv/bin/"), hook["id"]


@pytest.mark.parametrize("hook", hooks(), ids=lambda hook: hook["id"])
def test_each_hook_passes_on_a_file_of_its_kind(hook: dict[str, Any]) -> None:
    """Runs the hook's command the way pre-commit does (entry + file names, from the repo root) on
    one tracked file it selects, so a wrong path or flag in the config fails here, not at commit."""
    kinds = set(hook.get("types_or", [])) | set(hook.get("types", []))
    sample = {
        frozenset({"python", "pyi"}): "operator/incident_commander/config.py",
        frozenset({"shell"}): "hack/kind/kind-up.sh",
    }.get(frozenset(kinds), "Dockerfile")
    if "files" in hook:
        assert re.search(hook["files"], sample), (hook["id"], sample)
    entry = shlex.split(hook["entry"])
    # ruff format must not rewrite the tree from a test: --check is its read-only twin.
    if hook["id"] == "ruff-format":
        entry.append("--check")
    argv = entry if hook.get("pass_filenames", True) is False else [*entry, sample]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
