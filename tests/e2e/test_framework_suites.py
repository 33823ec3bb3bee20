"""The frameworks' own test suites against the running service: LangChain's standard
integration suites for ChatOpenAI and OpenAIEmbeddings, LlamaIndex's OpenAILike with tools,
and the OpenAI Agents SDK on the Responses API.

Each framework runs in its own environment (``make frameworks``: .venvs/langchain,
.venvs/llamaindex, .venvs/agents), with the service's address and a key in its environment. A case only a
larger model can pass is listed, with its evidence, in tests/frameworks/conftest.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, ROOT

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

FRAMEWORKS = ROOT / "tests" / "frameworks"


def framework_env(base_url: str, key: str) -> dict[str, str]:
    return {**os.environ, "INFERENCE_BASE_URL": f"{base_url}/v1", "INFERENCE_API_KEY": key,
            "INFERENCE_CHAT_MODEL": CHAT_MODEL, "INFERENCE_EMBED_MODEL": EMBED_MODEL,
            "TIKTOKEN_CACHE_DIR": str(ROOT / ".venvs" / "langchain" / "tiktoken-cache"),
            # The project's own modules are not the frameworks' business.
            "PYTHONPATH": ""}


def run_suite(python: Path, args: list[str], env: dict[str, str], report: Path
              ) -> dict[str, str]:
    """Each case's outcome (passed, failed, skipped, xfailed) by its name."""
    assert python.exists(), f"{python} is missing: `make frameworks` makes it"
    subprocess.run([str(python), "-m", "pytest", "-c", str(FRAMEWORKS / "pytest.ini"),
                    "--rootdir", str(FRAMEWORKS), "-p", "no:cacheprovider", "-q",
                    "-o", "junit_family=xunit1", f"--junitxml={report}", *args],
                   cwd=FRAMEWORKS, env=env, check=False)
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                kind = child.get("type", "")
                outcome = "xfailed" if "xfail" in kind else "skipped"
        outcomes[name] = outcome
    return outcomes


def failures(outcomes: dict[str, str]) -> dict[str, str]:
    return {name: outcome for name, outcome in outcomes.items() if outcome == "failed"}


def test_langchain_standard_suites(base_url: str, admin_key: str, tmp_path: Path) -> None:
    outcomes = run_suite(ROOT / ".venvs" / "langchain" / "bin" / "python",
                         ["langchain_suites.py"], framework_env(base_url, admin_key),
                         tmp_path / "langchain.xml")
    print({o: sum(1 for v in outcomes.values() if v == o) for o in set(outcomes.values())})
    assert outcomes, "the suites ran no case"
    assert not failures(outcomes), failures(outcomes)


def test_llamaindex_openai_like_tools(base_url: str, admin_key: str, tmp_path: Path) -> None:
    outcomes = run_suite(ROOT / ".venvs" / "llamaindex" / "bin" / "python",
                         ["llamaindex_tools.py"], framework_env(base_url, admin_key),
                         tmp_path / "llamaindex.xml")
    assert outcomes and not failures(outcomes), outcomes


def test_openai_agents_sdk_on_the_responses_api(base_url: str, admin_key: str,
                                                tmp_path: Path) -> None:
    outcomes = run_suite(ROOT / ".venvs" / "agents" / "bin" / "python",
                         ["agents_responses.py"], framework_env(base_url, admin_key),
                         tmp_path / "agents.xml")
    assert outcomes and not failures(outcomes), outcomes
