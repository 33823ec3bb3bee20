"""Model lifecycle and aliases on the running service (docs/api.md, "Models"): a second app
from a test config that declares them (tests/e2e/configs/lifecycle.yaml), driven through the
official `openai` client: the alias and the retired model answer with the model that ran, the
deprecated model's replies carry Deprecation and Sunset, the ledger records the model that ran,
and the cards say it all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import openai
import pytest

from deployments.config import app_args_from_serve_config
from tests.support.e2e import ROOT, inference_cli, make_client
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

CONFIG = ROOT / "tests" / "e2e" / "configs" / "lifecycle.yaml"
CURRENT = "test/minilm:current"
ALIAS = "test/minilm:latest"
DEPRECATED = "test/minilm:deprecated"
RETIRED = "test/minilm:retired"


@pytest.fixture(scope="module")
def lifecycle_url(serve_proxy_url: str, state_dir: Path) -> Iterator[str]:
    from ray import serve

    from deployments.app import build_app

    serve.run(build_app(app_args_from_serve_config(CONFIG)), name="lifecycle",
              route_prefix="/lifecycle")
    try:
        yield f"{serve_proxy_url}/lifecycle"
    finally:
        serve.delete("lifecycle")


@pytest.fixture(scope="module")
def project_key() -> tuple[str, str]:
    project = inference_cli("projects", "create", "lifecycle")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisFullAccess",
                        "--project", project)["secret_key"]
    return project, key


@pytest.fixture(scope="module")
def client(lifecycle_url: str, project_key: tuple[str, str]) -> openai.OpenAI:
    project, key = project_key
    return make_client(lifecycle_url, key, project)


def test_alias_and_retired_model_answer_as_the_model_that_ran(
        client: openai.OpenAI, project_key: tuple[str, str]) -> None:
    direct = client.embeddings.create(model=CURRENT, input="a lighthouse by the sea")
    by_alias = client.embeddings.create(model=ALIAS, input="a lighthouse by the sea")
    raw = client.embeddings.with_raw_response.create(model=RETIRED,
                                                     input="a lighthouse by the sea")
    retired = raw.parse()
    assert by_alias.model == CURRENT and retired.model == CURRENT
    assert by_alias.data[0].embedding == direct.data[0].embedding
    assert retired.data[0].embedding == direct.data[0].embedding
    # The retired name says why it was answered by another model, and by which.
    assert raw.headers["link"] == f'</v1/models/{CURRENT}>; rel="successor-version"'
    assert parsedate_to_datetime(raw.headers["sunset"]).date() == date(2026, 9, 1)

    project, _ = project_key

    def ledger() -> dict[str, int]:
        return {r["model"]: r["requests"]
                for r in inference_cli("usage", "--project", project)}

    # Only the model that ran is in the ledger: never the alias nor the retired name.
    assert wait_until(lambda: ledger().get(CURRENT) == 3, timeout=15) is not None, ledger()
    assert set(ledger()) == {CURRENT}


def test_a_deprecated_model_answers_and_its_replies_say_until_when(
        client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model=DEPRECATED, input="hello")
    assert raw.parse().model == DEPRECATED
    deprecated = int(raw.headers["deprecation"].removeprefix("@"))
    assert datetime.fromtimestamp(deprecated, UTC).date() == date(2026, 11, 1)
    assert parsedate_to_datetime(raw.headers["sunset"]).date() == date(2027, 3, 31)
    current = client.embeddings.with_raw_response.create(model=CURRENT, input="hello")
    assert "deprecation" not in current.headers and "sunset" not in current.headers


def test_cards_show_the_lifecycle_and_aliases(client: openai.OpenAI) -> None:
    cards = {m.id: m.model_dump() for m in client.models.list()}
    assert set(cards) == {CURRENT, DEPRECATED, RETIRED}
    assert cards[CURRENT]["status"] == "active" and cards[CURRENT]["aliases"] == [ALIAS]
    assert (cards[DEPRECATED]["status"], cards[DEPRECATED]["deprecated_at"],
            cards[DEPRECATED]["eol_at"]) == ("deprecated", "2026-11-01", "2027-03-31")
    assert (cards[RETIRED]["status"], cards[RETIRED]["replacement"]) == ("eol", CURRENT)
    assert client.models.retrieve(ALIAS).id == CURRENT
    assert client.models.retrieve(RETIRED).model_dump() == cards[RETIRED]


def test_unknown_names_stay_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="test/minilm:never", input="x")
    assert caught.value.code == "model_not_found"
