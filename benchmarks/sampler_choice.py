"""Why ponder samples with numpy: llama.cpp's C sampler chain against `_sampling.sample`.

Decodes one step of 16 sequences with the default model, then times, on those 16 logits rows
(151,936 entries each), (a) one llama.cpp sampler chain per sequence (top-k 40, top-p 0.95,
temperature 0.7, dist), called through `llama_sampler_sample` as llama-cpp-python allows, and a
greedy chain; (b) ponder's vectorised sampler with the same settings, and argmax.

    python benchmarks/sampler_choice.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import llama_cpp

from ponder.core.types import SamplingParams
from ponder.models._sampling import sample, sampler_for
from ponder.models.gguf_files import embedded_gguf
from ponder.models.llamacpp import LlamaCppModel

ROWS = 16
OUT = Path(__file__).resolve().parent.parent / "docs/results/sampler_choice.md"


def best_ms(fn, repeat: int = 30) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def chain(top_k: int, top_p: float, temperature: float, seed: int) -> llama_cpp.llama_sampler_p:
    smpl = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if temperature == 0:
        llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_greedy())
        return smpl
    llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_top_k(top_k))
    llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_top_p(top_p, 1))
    llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_temp(temperature))
    llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_dist(seed))
    return smpl


def main() -> None:
    lm = LlamaCppModel(embedded_gguf("default"), n_seq_max=ROWS, n_ctx=2048)
    ctx, decoder = lm._ctx, lm._decoder  # a measurement script may look inside
    prompt = lm.tokenize("The quick brown fox")
    decoder.decode(prompt, list(range(len(prompt))), [ROWS] * len(prompt), True)
    for s in range(ROWS):
        decoder.copy(ROWS, s)
    decoder.decode([11] * ROWS, [len(prompt)] * ROWS, list(range(ROWS)), True)
    rows = decoder.logits(ROWS)

    lines = [f"# Sampling {ROWS} rows of {rows.shape[1]} logits (Qwen2.5-Coder-0.5B): "
             "llama.cpp's C sampler chains against ponder's numpy sampler", "",
             f"Best of 30; load average before: {os.getloadavg()[0]:.2f}.", "",
             "| sampling | llama.cpp C chain ms | ponder numpy ms |", "|---|---|---|"]
    for label, params in [("top-k 40, top-p 0.95, temp 0.7", SamplingParams(
            temperature=0.7, top_p=0.95, top_k=40)), ("greedy", SamplingParams())]:
        chains = [chain(params.top_k, params.top_p, params.temperature, s) for s in range(ROWS)]
        c_ms = best_ms(lambda chains=chains: [llama_cpp.llama_sampler_sample(c, ctx, i)
                                              for i, c in enumerate(chains)])
        ours = [sampler_for(params, 0, i) for i in range(ROWS)]
        np_ms = best_ms(lambda ours=ours: sample(ours, rows))
        lines.append(f"| {label} | {c_ms:.2f} | {np_ms:.2f} |")
        for c in chains:
            llama_cpp.llama_sampler_free(c)
    lm.close()
    lines += ["", "```", "python benchmarks/sampler_choice.py", "```", ""]
    print("\n".join(lines))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
