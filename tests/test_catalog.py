"""The model catalog: embedded-part assembly (atomic, checked), specs, and one-line errors."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from ponder.core.errors import ModelLoadError, ModelNotFound
from ponder.models import gguf_files
from ponder.models.catalog import load_model
from ponder.models.gguf_files import EmbeddedModel, check_gguf, embedded_gguf


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Two importable part packages, as the PyPI model packages are laid out."""
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777]
    for k, chunk in enumerate(chunks, 1):
        pkg = tmp_path / "site" / f"fakeparts_part{k}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{k:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PONDER_CACHE", str(tmp_path / "cache"))
    return chunks


def register(monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], sha: str | None = None) -> None:
    whole = b"".join(chunks)
    model = EmbeddedModel(
        title="Fake", filename="fake.gguf",
        parts=tuple((f"fakeparts_part{k}", f"data/part{k:02d}.bin") for k in (1, 2)),
        size=len(whole), sha256=sha or hashlib.sha256(whole).hexdigest(), extra="fake")
    monkeypatch.setitem(gguf_files.EMBEDDED, "fake-model", model)


def test_parts_are_assembled_once_into_the_cache(parts: list[bytes],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, parts)
    path = embedded_gguf("fake-model")
    assert path.read_bytes() == b"".join(parts)
    assert path.parent == gguf_files.cache_dir()
    mtime = path.stat().st_mtime_ns
    assert embedded_gguf("fake-model").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_checksum_mismatch_leaves_nothing_behind(parts: list[bytes],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, parts, sha="0" * 64)
    with pytest.raises(ModelLoadError, match=r"corrupt.*pip install --force-reinstall"):
        embedded_gguf("fake-model")
    leftovers = [p.name for p in gguf_files.cache_dir().iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_missing_package_names_the_pip_install(parts: list[bytes],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, parts)
    model = gguf_files.EMBEDDED["fake-model"]
    broken = EmbeddedModel(**{**model.__dict__, "parts": (("nosuch_part_pkg", "x.bin"),)})
    monkeypatch.setitem(gguf_files.EMBEDDED, "fake-model", broken)
    with pytest.raises(ModelNotFound, match=r"nosuch-part-pkg.*pip install 'ponder\[fake\]'"):
        embedded_gguf("fake-model")


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        pytest.param(None, ModelNotFound, "no model file", id="missing"),
        pytest.param(b"not a gguf at all", ModelLoadError, "not a GGUF", id="bad-magic"),
        pytest.param(b"", ModelLoadError, "not a GGUF", id="empty"),
    ],
)
def test_bad_gguf_files(tmp_path: Path, content: bytes | None, error: type[Exception],
                        match: str) -> None:
    path = tmp_path / "m.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        check_gguf(path)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        pytest.param("no-such-model", "unknown model 'no-such-model'", id="unknown-name"),
        pytest.param("./missing.gguf", "no model file", id="missing-path"),
    ],
)
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(ModelNotFound, match=match):
        load_model(spec)


def test_fake_spec_loads_the_scripted_model() -> None:
    model = load_model("fake", script=["\\boxed{1}"])
    assert model.name == "fake"


def test_core_imports_nothing_heavy() -> None:
    import subprocess
    code = ("import sys, ponder.models.catalog, ponder.schemes, ponder.core.types; "
            "print(sorted(m for m in ('torch', 'llama_cpp', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
