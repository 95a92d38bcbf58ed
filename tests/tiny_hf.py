"""Tiny Hugging Face models for tests: a word-level tokenizer and a 2-layer Llama config, random
weights, built in milliseconds with nothing to download.

Llama, not Qwen2: transformers 5 loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which
rebuilds a byte-level BPE pipeline and so drops a word-level vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tokenizers
import transformers


def word_tokenizer(vocab: Sequence[str], *, bos: str | None = "<s>", eos: str = "</s>",
                   specials: Sequence[str] = (), newline: bool = False,
                   split_punctuation: bool = True, spaced_decode: bool = False,
                   chat_template: str | None = None) -> Any:
    """A fast tokenizer over `vocab` (which holds "<pad>" and "<unk>"), one id per word.

    bos: added in front of every encoding (None: not at all). specials: extra special tokens.
    newline: "\\n" becomes an added token, so a "\\n" step separator survives pre-tokenization.
    split_punctuation: "2+3" is three words (False: only whitespace splits). spaced_decode:
    decoding joins words with spaces (a WordPiece decoder).
    """
    ids = {w: i for i, w in enumerate(vocab)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(ids, unk_token="<unk>"))
    tok.pre_tokenizer = (tokenizers.pre_tokenizers.Whitespace() if split_punctuation
                         else tokenizers.pre_tokenizers.WhitespaceSplit())
    if bos is not None:
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, ids[bos])])
    if spaced_decode:
        tok.decoder = tokenizers.decoders.WordPiece(prefix="##")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=list(specials), **({"bos_token": bos} if bos else {}))
    if newline:
        fast.add_tokens([tokenizers.AddedToken("\n", normalized=False)])
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def tiny_llama_config(tokenizer: Any, **overrides: Any) -> Any:
    """A 2-layer Llama (hidden 32, 4 heads, 2 KV heads) sized to `tokenizer`."""
    config: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id)
    return transformers.LlamaConfig(**(config | overrides))
