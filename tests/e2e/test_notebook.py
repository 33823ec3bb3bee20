"""The quickstart notebook runs top to bottom against the running app."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.e2e import ROOT

pytestmark = pytest.mark.slow  # the real Serve app on the built-in models


def test_quickstart_notebook_runs(base_url: str, admin_key: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BASE_URL", f"{base_url}/v1")
    monkeypatch.setenv("INFERENCE_API_KEY", admin_key)
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    first_answer = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "Paris" in first_answer
    speech = next(c for c in notebook.cells if "transcriptions.create" in c.source)
    heard = "".join(o.get("text", "") for o in speech.outputs)
    assert "sunny" in heard and "seconds=" in heard
    reranked = next(c for c in notebook.cells if '"/rerank"' in c.source)
    first_ranked = "".join(o.get("text", "") for o in reranked.outputs).splitlines()[0]
    assert "Paris" in first_ranked
