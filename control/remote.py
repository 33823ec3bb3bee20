"""The admin CLI's remote mode: the service's administration API over HTTP
(docs/api.md, "Administration")."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

TIMEOUT_S = 30.0


class RemoteError(Exception):
    """A call the service refused (its error message), or one that never reached it."""


class RemoteService:
    def __init__(self, base_url: str, api_key: str | None) -> None:
        if not api_key:
            raise RemoteError("a remote service needs a key: --api-key or INFERENCE_API_KEY")
        # The service's root: ".../v1" as an SDK's base URL is taken as well.
        root = base_url.rstrip("/").removesuffix("/v1")
        self._http = httpx.Client(base_url=root, timeout=TIMEOUT_S,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
             project: str | None = None, query: dict[str, str] | None = None) -> Any:
        """``path`` (``/v1/...``), under ``/<project>`` when one is given."""
        url = f"/{project}{path}" if project else path
        try:
            reply = self._http.request(method, url, json=body, params=query)
        except httpx.HTTPError as exc:
            raise RemoteError(f"could not reach {self._http.base_url}: {exc}") from None
        try:
            data = reply.json()
        except ValueError:
            raise RemoteError(f"{method} {url}: HTTP {reply.status_code}, not JSON") from None
        if reply.is_error:
            message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
            raise RemoteError(f"HTTP {reply.status_code}: {message or reply.text}")
        return data
