"""A trained model folder as one GGUF file, for ponder's llama.cpp backend (and llama-server,
Ollama, ...): `ponder export runs/distill/student --to student.gguf --quant q4_k_m`.

    path = export_gguf("runs/distill/student", "runs/distill/student.gguf", quant="f16")
    model = LlamaCppModel(path)          # its chat template, and so its reasoning parser, inside

1. Check, before any work: a folder written by `save_pretrained` (config.json and weights), an
   architecture that llama.cpp's converter knows, a quantisation of `QUANTS`, a writable target.
2. Convert with llama.cpp's own converter (`convert_hf_to_gguf.py`), which writes the weights,
   the tokenizer and the chat template (tokenizer_config.json or chat_template.jinja).
3. q4_k_m only: quantise the converted file with llama.cpp's quantiser
   (`llama_model_quantize`, through llama-cpp-python), as `llama-quantize` would.
4. Check the file (GGUF header, at least one tensor) and rename it into place: the target is
   whole or absent, never half written; the temporary files beside it are removed on failure.

How the converter ships. The converter and the `gguf` library it writes with are vendored
unmodified in ponder/_vendor/llama_cpp_convert/ (MIT; from llama-cpp-python 0.3.36's copy of
llama.cpp, the same llama.cpp that ponder's backend runs, so the files it writes load there).
The `gguf` on PyPI is not a match: its 0.19.0 carries the same version number as the
converter's gguf-py but older code (no `MODEL_ARCH.DFLASH`, which the converter's qwen module
names at import), so the converter fails on it. PyPI's gguf stays in the train extra for
transformers, which reads GGUFs with it (torch_gguf.load_trainable).

Both steps run in child processes: the converter is a script with its own argv, logging and
`sys.exit`, and the vendored `gguf` must not replace the PyPI `gguf` that transformers has
already imported in this process; llama.cpp's quantiser prints every tensor to stdout, and a
crash in C would take ponder with it. A failed step is one line: its last error.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ponder.core.errors import ConfigError, DataError, ModelLoadError, ModelNotFound
from ponder.core.files import check_writable, fsync_dir

VENDOR = Path(__file__).resolve().parent.parent / "_vendor" / "llama_cpp_convert"
CONVERTER = VENDOR / "convert_hf_to_gguf.py"


@dataclass(frozen=True)
class Quant:
    """How a `--quant` is made: the converter's `--outtype`, then (if set) llama.cpp's
    quantiser to the llama_ftype named by `ftype` (a llama-cpp-python constant)."""

    outtype: str
    ftype: str | None = None
    about: str = ""


QUANTS: dict[str, Quant] = {
    "f32": Quant("f32", about="float32, exact"),
    "f16": Quant("f16", about="float16 (default)"),
    "bf16": Quant("bf16", about="bfloat16"),
    "q8_0": Quant("q8_0", about="8-bit, by the converter"),
    # "auto": the converter's 16-bit type nearest the weights (bf16 for a bf16 model), as
    # llama.cpp's README converts before `llama-quantize`
    "q4_k_m": Quant("auto", "LLAMA_FTYPE_MOSTLY_Q4_K_M", about="4-bit k-quant, by llama.cpp"),
}
WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
CONVERTER_NEEDS = ("torch", "transformers", "safetensors", "sentencepiece", "numpy", "yaml",
                   "tqdm")


def export_gguf(model_dir: str | Path, to: str | Path | None = None, *, quant: str = "f16",
                echo: Callable[[str], None] | None = None) -> Path:
    """Write the model folder `model_dir` as a GGUF at `to` (default: `<model_dir>.gguf`
    beside the folder), replacing a file there; returns its path. The steps and why they run
    in child processes: the module docstring."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    source, target = check_export(model_dir, to, quant)
    how = QUANTS[quant]
    if not _has_chat_template(source):
        echo(f"note: {source} has no chat template; llama.cpp will prompt it with ChatML")
    converted = _temp_beside(target)
    final = _temp_beside(target) if how.ftype else converted
    try:
        echo(f"converting {source} with llama.cpp's converter ({how.outtype})")
        _run([sys.executable, str(CONVERTER), str(source), "--outfile", str(converted),
              "--outtype", how.outtype], f"llama.cpp's converter failed on {source}")
        if how.ftype:
            echo(f"quantising to {quant} with llama.cpp")
            _run([sys.executable, "-c", _QUANTIZE, str(converted), str(final), how.ftype],
                 f"llama.cpp could not quantise {source} to {quant}")
        _check_gguf(final, source)
        _publish(final, target)
    finally:
        converted.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
    echo(f"GGUF ({quant}, {target.stat().st_size / 2**20:.1f} MiB) → {target}")
    return target


def check_export(model_dir: str | Path, to: str | Path | None, quant: str
                 ) -> tuple[Path, Path]:
    """Everything `export_gguf` needs, checked in one line each before any work: returns the
    model folder and the target file."""
    source = Path(model_dir)
    if quant not in QUANTS:
        raise ConfigError("quant", quant, f"use one of {', '.join(QUANTS)}")
    config = source / "config.json"
    if not source.is_dir() or not config.is_file():
        raise ModelNotFound(f"{source} is not a model folder (no config.json); give a folder "
                            "written by save_pretrained, e.g. runs/distill/student")
    if not any(next(source.glob(pattern), None) for pattern in WEIGHTS):
        raise ModelNotFound(f"{source} has a config.json but no weights (*.safetensors); save "
                            "the model there with save_pretrained")
    try:
        names = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
        raise DataError(f"{config} is not a model config ({e})") from None
    arch = names[0] if names else None
    if arch not in known_architectures():
        raise ConfigError("model", f"{source} ({arch or 'no architecture named'})",
                          "llama.cpp's converter does not know this architecture; export a "
                          "model of a known one (LlamaForCausalLM, Qwen2ForCausalLM, ...)")
    target = Path(to) if to is not None else default_target(source)
    if target.suffix != ".gguf":
        raise ConfigError("to", str(target), "name a .gguf file, e.g. student.gguf")
    check_writable(target, "--to")
    _require([*CONVERTER_NEEDS, *(["llama_cpp"] if QUANTS[quant].ftype else [])])
    return source, target


def default_target(model_dir: Path) -> Path:
    """`runs/distill/student` -> `runs/distill/student.gguf` (`.` -> `../<its name>.gguf`)."""
    folder = model_dir if model_dir.name else model_dir.resolve()
    return folder.with_name(f"{folder.name}.gguf")


def parse_export(spec: str) -> str:
    """`--export gguf` or `gguf:QUANT` (training commands) -> the quantisation."""
    kind, _, quant = spec.partition(":")
    if kind != "gguf":
        raise ConfigError("export", spec, "use gguf, or gguf:QUANT with QUANT one of "
                          + ", ".join(QUANTS))
    quant = quant or "f16"
    if quant not in QUANTS:
        raise ConfigError("export", spec, f"use gguf:QUANT with QUANT one of {', '.join(QUANTS)}")
    return quant


def known_architectures() -> frozenset[str]:
    """The Hugging Face architectures the vendored converter maps to a model class, read from
    its table (`TEXT_MODEL_MAP` in conversion/__init__.py) without importing it."""
    tree = ast.parse((VENDOR / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "TEXT_MODEL_MAP":
            assert node.value is not None
            return frozenset(ast.literal_eval(node.value))
    raise AssertionError("the vendored converter has no TEXT_MODEL_MAP")


# --- the steps ----------------------------------------------------------------------------------

# llama.cpp's quantiser, run as `python -c _QUANTIZE SRC DST FTYPE_NAME`; exits with its status.
_QUANTIZE = """
import ctypes, sys
import llama_cpp
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, sys.argv[3])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(),
                                        ctypes.byref(params)))
"""


def _run(command: list[str], failure: str) -> None:
    """A child process; on failure, one line: `failure` and the child's last error line."""
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the vendored gguf
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ModelLoadError(f"{failure}: {_last_error(done.stdout + done.stderr)}")


def _last_error(output: str) -> str:
    """The line that says why: the last logged error, else the last line (a traceback's)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines
              if line.startswith("ERROR:") or "failed to" in line or "Error:" in line]
    last = (errors or lines or ["no output"])[-1]
    return last.removeprefix("ERROR:hf-to-gguf:")


def _temp_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _check_gguf(path: Path, source: Path) -> None:
    """A GGUF header with at least one tensor (the converter writes a file with none, and
    says it succeeded, from a folder whose weights it did not find)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if len(head) < 16 or head[:4] != b"GGUF" or struct.unpack("<Q", head[8:16])[0] == 0:
        raise ModelLoadError(f"the GGUF converted from {source} holds no weights; check that "
                             "its *.safetensors files are complete")


def _publish(path: Path, target: Path) -> None:
    """fsync, give a plain file's permissions (mkstemp made it 0600), rename into place."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    os.replace(path, target)
    fsync_dir(target.parent)


def _has_chat_template(source: Path) -> bool:
    if (source / "chat_template.jinja").is_file() or (source / "chat_template.json").is_file():
        return True
    config = source / "tokenizer_config.json"
    try:
        return bool(config.is_file()
                    and json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _require(modules: list[str]) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        extra = "llamacpp" if missing == ["llama_cpp"] else "train"
        raise ModelNotFound(f"exporting to GGUF needs {', '.join(missing)}; run: pip install "
                            f"'ponder[{extra}]'")
