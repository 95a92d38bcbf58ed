"""GGUF -> trainable torch: plain transformers models from ponder's model specs (catalog GGUFs,
.gguf paths, local HF folders, hub ids), for training (ponder.train) and for the transformers
backend (transformers_lm.py).

The offline models are GGUF files. transformers can read a GGUF and dequantise it into float32
(`from_pretrained(folder, gguf_file=...)`), but the model it returns keeps a GGUF quantizer
marker: TRL's trainers then refuse to train it ("cannot perform fine-tuning on purely quantized
models") and `save_pretrained` refuses to save it. So the weights are moved into a plain model
built from the same config without `quantization_config` (shared/MODELS.md, checked with
transformers 5.23 and TRL 1.16). The tokenizer comes from the GGUF too.

    model, tokenizer = load_trainable("smollm2-135m")   # or "qwen-0.5b", "./runs/student"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.core.errors import ConfigError, ModelLoadError, ModelNotFound
from ponder.models.gguf_files import ALIASES, EMBEDDED, embedded_gguf

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def require_training() -> None:
    """One line, not a traceback, where the training extra is missing."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ModelNotFound(f"training needs torch and transformers ({e.name} is missing); run: "
                            "pip install 'ponder[train]'") from e


def load_trainable(spec: str, *, dtype: str = "float32"
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A plain, trainable causal LM and its tokenizer.

    `spec`: a catalog name or .gguf path (dequantised), a folder saved with `save_pretrained`,
    or a hub id (downloaded; online users only)."""
    require_training()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ConfigError("dtype", dtype, "use float32, bfloat16 or float16")
    gguf = _gguf_path(spec)
    model: Any
    if gguf is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype)
        except OSError as e:
            raise ModelNotFound(f"no trainable model at {spec!r} ({e}); give a catalog name, a "
                                ".gguf path, a folder written by save_pretrained or a hub id"
                                ) from e
    else:
        folder, name = str(gguf.parent), gguf.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"transformers could not read {gguf} ({e}); its architecture "
                                 "or quantisation may not be supported for training") from e
        model = _plain_copy(quantized, torch_dtype)
    if tokenizer.pad_token is None:  # batched training and generation pad
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _gguf_path(spec: str) -> Path | None:
    if spec in EMBEDDED or spec in ALIASES:
        return embedded_gguf(spec)
    if spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelNotFound(f"no GGUF file at {path}; give an existing path")
        return path
    return None


def _plain_copy(quantized: Any, dtype: Any) -> PreTrainedModel:
    """The same weights in a model without the GGUF quantizer marker (see the docstring)."""
    from transformers import AutoModelForCausalLM

    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ModelLoadError(f"the GGUF's weights do not match {type(model).__name__}: missing "
                             f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    if tied:
        model.tie_weights()
    return model
