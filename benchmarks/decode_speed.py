"""Single-stream decode speed of GGUF files through ponder's llama.cpp backend, one after another
on the same machine: a distilled student's exported GGUF against the base model's.

Each model: one GSM8K-style chat prompt, greedy, 128 new tokens (`ignore_eos`), after one
warm-up run; "decode tok/s" leaves out the prefill (timed apart, as a max_tokens=1 call), the
median of `--runs` runs. Markdown on stdout.

    .venv/bin/python benchmarks/decode_speed.py default runs/distill_gsm8k/student.gguf
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from ponder.core.types import GenerationRequest, SamplingParams, user
from ponder.models.catalog import gguf_for
from ponder.models.llamacpp import LlamaCppModel

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?")


def speed(path: Path, tokens: int, runs: int, threads: int) -> tuple[float, float]:
    """(median decode tok/s, file size in MB)."""
    lm = LlamaCppModel(str(path), n_threads=threads)
    messages = user(QUESTION)
    try:
        rates = []
        for _ in range(runs + 1):  # the first is a warm-up
            lm.clear_cache()
            t0 = time.perf_counter()
            lm.generate([GenerationRequest(SamplingParams(max_tokens=1), messages=messages)])
            prefill = time.perf_counter() - t0
            lm.clear_cache()
            params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0.0)
            t0 = time.perf_counter()
            [[out]] = lm.generate([GenerationRequest(params, messages=messages)])
            rates.append(out.completion_tokens / (time.perf_counter() - t0 - prefill))
        return statistics.median(rates[1:]), path.stat().st_size / 1e6
    finally:
        lm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="catalog names or .gguf paths")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    print(f"| model | file MB | decode tok/s (1 stream, {args.tokens} tokens, median of "
          f"{args.runs}) |")
    print("|---|---:|---:|")
    for spec in args.models:
        path = gguf_for(spec)
        rate, size = speed(path, args.tokens, args.runs, args.threads)
        print(f"| {spec} | {size:,.0f} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
