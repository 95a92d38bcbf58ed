"""Batched decoding speed of ponder's llama.cpp backend against llama.cpp's own ceiling.

ponder: one GSM8K test question, chat-templated, N = 1, 8, 16 samples of exactly 256 new tokens
(`ignore_eos`), greedy and sampled (temperature 0.7, top-p 0.95, top-k 40), through
`LlamaCppModel.generate`, in both KV layouts: separate streams (the default) and one unified
pool. The prompt cache is cleared before each run, so every run prefills its prompt.

ceiling: `llama-batched-bench` (random tokens, no sampling, no detokenisation) built from the
llama.cpp that llama-cpp-python's source distribution vendors, the same version ponder runs;
one 128-token prompt shared by all sequences (-pps), 256 new tokens, the same thread count;
separate streams by default, `-kvu` for the unified pool. Built once into ~/.cache/ponder/bench/.

"decode tok/s" leaves out the prompt prefill (ponder: timed apart, as a max_tokens=1 call;
ceiling: its T_PP), so both sides measure the generation loop alone. For each N the ceiling
runs right before ponder's runs, so that a busy machine skews both alike.

    flock /tmp/ponder-bench.lock python benchmarks/batched_decoding.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from ponder.core.types import GenerationRequest, SamplingParams, user
from ponder.models.gguf_files import embedded_gguf
from ponder.models.llamacpp import LlamaCppModel

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.3.36"
BENCH_DIR = Path(os.path.expanduser("~/.cache/ponder/bench"))
PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
MODES = {
    "greedy": dict(temperature=0.0),
    "sampled": dict(temperature=0.7, top_p=0.95, top_k=40),
}


def batched_bench_binary() -> Path:
    """llama-batched-bench from llama-cpp-python's sdist (vendored llama.cpp), built once."""
    binary = BENCH_DIR / f"llama.cpp-{VERSION}" / "build" / "bin" / "llama-batched-bench"
    if binary.is_file():
        return binary
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    sdist = BENCH_DIR / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", f"llama-cpp-python=={VERSION}", "-d", str(BENCH_DIR)],
                       check=True)
    src = BENCH_DIR / f"llama.cpp-{VERSION}"
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(src, members=members, filter="data")
    build = src / "build"
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
                   check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-batched-bench",
                    "-j", str(os.cpu_count() or 1)], check=True)
    return binary


def ceiling(model: Path, n: int, tokens: int, threads: int, unified: bool) -> tuple[float, str]:
    """llama-batched-bench's decode tok/s for N = n, and the command that measured it."""
    cmd = [str(batched_bench_binary()), "-m", str(model), "-c", "16384", "-b", "512",
           "-ub", "512", "-npp", "128", "-ntg", str(tokens), "-npl", str(n), "-pps",
           "-t", str(threads), "-tb", str(threads), "--output-format", "jsonl",
           *(["-kvu"] if unified else [])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = next(json.loads(line) for line in (out.stdout + out.stderr).splitlines()
               if line.startswith("{"))
    return row["speed_tg"], " ".join(cmd).replace(str(Path.home()), "~")


def ponder(lm: LlamaCppModel, messages: tuple, n: int, tokens: int,
           sampling: dict) -> tuple[float, float, float]:
    """(wall s, end-to-end tok/s, decode tok/s) of N samples of `tokens` new tokens each;
    the prefill is timed apart just before, as a one-token call."""
    lm.clear_cache()
    t0 = time.perf_counter()
    lm.generate([GenerationRequest(SamplingParams(max_tokens=1), messages=messages)])
    prefill = time.perf_counter() - t0
    params = SamplingParams(n=n, max_tokens=tokens, ignore_eos=True, seed=0, **sampling)
    lm.clear_cache()
    t0 = time.perf_counter()
    out = lm.generate([GenerationRequest(params, messages=messages)])
    wall = time.perf_counter() - t0
    assert all(c.completion_tokens == tokens for c in out[0])
    return wall, n * tokens / wall, n * tokens / (wall - prefill)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--ns", default="1,8,16")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k_test.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "docs/results/batched_decoding.md"))
    args = ap.parse_args()
    ns = [int(n) for n in args.ns.split(",")]
    path = embedded_gguf(args.model)
    with open(args.data) as fh:
        messages = user(f"{json.loads(fh.readline())['question']}\n{PROMPT}")
    load = os.getloadavg()[0]
    layouts = {  # the unified pool must hold the prompt and every sample's tokens at once
        "streams": LlamaCppModel(path, n_threads=args.threads, n_seq_max=max(ns)),
        "unified": LlamaCppModel(path, n_threads=args.threads, n_seq_max=max(ns),
                                 kv_unified=True, n_ctx=8192),
    }
    lm = layouts["streams"]
    n_prompt = lm.count_tokens(lm.render_chat(messages))
    for m in layouts.values():  # warm-up: first-call allocations
        m.generate([GenerationRequest(SamplingParams(max_tokens=1), messages=messages)])

    rows, commands, tops, decs = [], {}, {}, {}
    for n in ns:
        for name, m in layouts.items():
            top, best = float("nan"), {}
            for _ in range(args.repeat):  # best of R, alternating, against a busy machine
                if not args.no_ceiling:
                    speed, commands[name] = ceiling(path, n, args.tokens, args.threads,
                                                    unified=name == "unified")
                    top = speed if top != top else max(top, speed)
                for mode, sampling in MODES.items():
                    got = ponder(m, messages, n, args.tokens, sampling)
                    best[mode] = min(best.get(mode, got), got)  # least wall time
            tops[name, n] = top
            for mode, (wall, e2e, dec) in best.items():
                decs[name, mode, n] = dec
                rows.append(f"| {name} | {mode} | {n} | {wall:.2f} | {e2e:.1f} | {dec:.1f} "
                            f"| {top:.1f} | {dec / top:.2f} |")
                print(rows[-1], file=sys.stderr)
    for m in layouts.values():
        m.close()

    lines = [
        f"# Batched decoding: {path.name}, {args.threads} threads, {args.tokens} new tokens each",
        "",
        f"ponder: GSM8K test record 0, chat-templated, {n_prompt} prompt tokens; "
        f"ceiling: llama-batched-bench in the same KV layout, "
        f"128-token shared prompt. Best of {args.repeat} alternating runs each. "
        f"Load average before the run: {load:.2f}.",
        "",
        "| KV layout | sampling | N | ponder wall s | ponder tok/s (end-to-end) "
        "| ponder decode tok/s | ceiling decode tok/s | ratio |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The unified layout against the default (streams) ceiling: " + ", ".join(
            f"{mode} N={n} {decs['unified', mode, n] / tops['streams', n]:.2f}"
            for n in ns for mode in MODES) + " (its attention scans every sequence's cells).",
        "", "Commands:", "", "```",
        f"flock /tmp/ponder-bench.lock python benchmarks/batched_decoding.py --model {args.model} "
        f"--ns {args.ns} --tokens {args.tokens} --threads {args.threads} --repeat {args.repeat}",
        *[c.replace(f"-npl {ns[-1]}", "-npl N") for c in commands.values() if c],
        "```", "",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
