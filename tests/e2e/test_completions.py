"""Legacy completions (``client.completions``) on the built-in chat model, through the
official client: text, several prompts, token ids, echo and logprobs, streams with usage
as for chat, the context limit, a dropped request metered, and the strict field list."""

from __future__ import annotations

import functools
import time
from typing import Any

import openai
import pytest
from transformers import AutoTokenizer

from deployments.builtin_models import prepare
from tests.e2e.test_limits import running_requests, wait_until_idle
from tests.support.e2e import CHAT_MODEL, EMBED_MODEL, inference_cli, make_client

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models

CAPITAL = "The capital of France is"
STORY = "Once upon a time, a dragon and a knight"


@functools.cache
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(prepare("smollm2-135m-instruct"))


def test_a_completion_continues_the_prompt(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=CHAT_MODEL, prompt=CAPITAL, temperature=0,
                                      max_tokens=8)
    assert reply.object == "text_completion" and reply.model == CHAT_MODEL
    assert "Paris" in reply.choices[0].text
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(tokenizer().encode(CAPITAL))
    assert 0 < reply.usage.completion_tokens <= 8


def test_max_tokens_defaults_to_16(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=CHAT_MODEL, prompt=STORY, temperature=1.0)
    assert reply.usage is not None and reply.usage.completion_tokens <= 16
    assert reply.choices[0].finish_reason in ("length", "stop")


def test_several_prompts_and_token_ids(client: openai.OpenAI) -> None:
    ids = tokenizer().encode(CAPITAL)
    reply = client.completions.create(model=CHAT_MODEL, prompt=[CAPITAL, STORY], n=2,
                                      max_tokens=4, temperature=1.0)
    assert sorted(c.index for c in reply.choices) == [0, 1, 2, 3]
    by_ids = client.completions.create(model=CHAT_MODEL, prompt=ids, max_tokens=8,
                                       temperature=0)
    by_text = client.completions.create(model=CHAT_MODEL, prompt=CAPITAL, max_tokens=8,
                                        temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage is not None and by_ids.usage.prompt_tokens == len(ids)


def test_echo_and_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=CHAT_MODEL, prompt=CAPITAL, max_tokens=3,
                                      temperature=0, echo=True, logprobs=2)
    choice = reply.choices[0]
    assert choice.text.startswith(CAPITAL)
    assert choice.logprobs is not None and choice.logprobs.tokens
    # Up to 2 alternatives per token, and the token itself when it is not among them.
    alternatives = [top for top in choice.logprobs.top_logprobs or [] if top]
    assert alternatives and all(len(top) <= 3 for top in alternatives)


def test_a_stream_reports_usage_as_chat_does(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=CHAT_MODEL, prompt=CAPITAL, max_tokens=10,
                                      temperature=0)
    chunks = list(client.completions.create(model=CHAT_MODEL, prompt=CAPITAL, max_tokens=10,
                                            temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    counts = [c.usage.completion_tokens for c in chunks if c.usage is not None]
    assert counts == sorted(counts) and len(counts) == len(chunks)  # on every chunk, growing
    assert chunks[-1].usage == whole.usage
    # OpenAI's protocol when asked for: usage on a trailing chunk only.
    openai_way = list(client.completions.create(
        model=CHAT_MODEL, prompt=[CAPITAL, STORY], n=2, max_tokens=5, temperature=1.0,
        stream=True, stream_options={"include_usage": True}))
    assert all(c.usage is None for c in openai_way[:-1])
    last = openai_way[-1]
    assert last.choices == [] and last.usage is not None
    # Each prompt counted once, however many choices it has; every choice's tokens.
    assert last.usage.prompt_tokens == sum(len(tokenizer().encode(p)) for p in (CAPITAL, STORY))
    assert 4 <= last.usage.completion_tokens <= 4 * 5


def test_a_prompt_past_the_context_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=CHAT_MODEL, prompt="word " * 2100, max_tokens=1)
    assert refused.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as asked_too_much:
        client.completions.create(model=CHAT_MODEL, prompt=CAPITAL, max_tokens=2048)
    assert asked_too_much.value.code == "context_length_exceeded"
    assert asked_too_much.value.param == "max_tokens"


@pytest.mark.parametrize(("fields", "param"), [
    ({"suffix": "."}, "suffix"),
    ({"best_of": 2}, "best_of"),
    ({"logprobs": 6}, "logprobs"),
    ({"prompt": ""}, "prompt"),
])
def test_what_the_route_does_not_take_is_a_400_naming_it(client: openai.OpenAI,
                                                         fields: dict[str, Any],
                                                         param: str) -> None:
    body: dict[str, Any] = {"model": CHAT_MODEL, "prompt": CAPITAL, **fields}
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(**body)
    assert refused.value.param == param


def test_token_ids_outside_the_vocabulary_are_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=CHAT_MODEL, prompt=[10**7], max_tokens=1)
    assert "vocabulary" in refused.value.message


def test_an_embedding_model_cannot_complete(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=EMBED_MODEL, prompt=CAPITAL)
    assert refused.value.code == "model_not_supported"


def test_completions_are_metered_and_a_dropped_one_too(base_url: str) -> None:
    project = inference_cli("projects", "create", "legacy-completions")["id"]
    key = inference_cli("keys", "create", "--permission-set", "GenerativeApisModelAccess",
                        "--project", project)
    client = make_client(base_url, key["secret_key"], project)
    told = client.completions.create(model=CHAT_MODEL, prompt=STORY, max_tokens=5)
    assert told.usage is not None
    dropping = client.with_options(timeout=1.5)
    with pytest.raises(openai.APITimeoutError):  # the client gives up and goes
        dropping.completions.create(model=CHAT_MODEL, prompt=STORY, n=4, max_tokens=1000,
                                    temperature=1)
    assert wait_until_idle(10) < 5, "the dropped request's generation was aborted"
    assert running_requests() == 0
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while sum(r["requests"] for r in rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = inference_cli("usage", "--project", project)
    assert sum(r["requests"] for r in rows) == 2
    assert sum(r["prompt_tokens"] for r in rows) == 2 * told.usage.prompt_tokens
    dropped = sum(r["completion_tokens"] for r in rows) - told.usage.completion_tokens
    assert 0 < dropped < 4 * 1000
