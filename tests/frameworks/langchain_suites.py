"""LangChain's standard integration suites (langchain-tests) for its OpenAI integration,
pointed at the running service with nothing changed but the base URL and the key.

Run in the LangChain environment (.venvs/langchain) by tests/e2e/test_framework_suites.py,
which starts the service and passes its address in the environment. Cases only a larger
model than the built-in one can pass are listed in ``MODEL_QUALITY`` (conftest.py marks them).
"""

from __future__ import annotations

import os
from typing import Any

from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langchain_tests.integration_tests import (
    ChatModelIntegrationTests,
    EmbeddingsIntegrationTests,
)

# The service, as tests/e2e/test_framework_suites.py started it: nothing else is set.
SERVICE = {"base_url": os.environ.get("INFERENCE_BASE_URL", ""),
           "api_key": os.environ.get("INFERENCE_API_KEY", ""), "max_retries": 0}
CHAT_MODEL = os.environ.get("INFERENCE_CHAT_MODEL", "")
EMBED_MODEL = os.environ.get("INFERENCE_EMBED_MODEL", "")


class TestChatOpenAIOnTheService(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            **SERVICE, "model": CHAT_MODEL, "temperature": 0, "timeout": 300,
            # Enough that no answer of the suite's is cut: truncation decides nothing.
            "max_tokens": 1024,
            # ChatOpenAI asks for usage in streams only from OpenAI's own URL unless told.
            "stream_usage": True,
        }

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        # The service reports prompt and completion tokens, no cache or reasoning details.
        return {"invoke": [], "stream": []}


class TestOpenAIEmbeddingsOnTheService(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[OpenAIEmbeddings]:
        return OpenAIEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {
            **SERVICE, "model": EMBED_MODEL,
            # OpenAIEmbeddings sends tiktoken ids unless told: the service embeds text.
            "check_embedding_ctx_length": False,
        }
