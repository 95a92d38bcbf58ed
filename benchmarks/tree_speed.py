"""Time per generated token: step-level beam search against best-of-N, at equal tokens.

Beam search writes short steps, many calls deep, each call continuing a different path; best-of-N
writes whole chains from one prompt in one call. If expanding a node re-prefilled its path, or
the many short calls left the batch half empty, beam search would cost far more per token. The
llama.cpp backend keeps each step's KV (`keep_kv`) so a path is never prefilled again.

For each of the first --questions GSM8K *train* questions, on the same model:
  1. best-of-n@N (confidence scorer: no extra model calls), whole chains of --max-tokens;
  2. beam@W:expansions=E with the token budget best-of-n just spent, and a step scorer that
     needs no model (`uniform`: every step scores 0.5 and the beam keeps the first children;
     until the scorer contract, `rule` did this silently), so that both sides measure the
     policy's generation alone;
  3. the same beam with the policy as judge (`judge`), to show what scoring costs on top.

Reported per scheme: generated tokens, wall seconds, seconds per generated token, and the ratio
beam / best-of-n; prompt tokens the backend prefilled and those it reused from held KV.

    flock /tmp/ponder-bench.lock .venv/bin/python benchmarks/tree_speed.py

writes docs/results/tree_speed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from ponder.core.types import Usage
from ponder.models.catalog import load_model
from ponder.schemes import get_scheme
from ponder.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Tally:
    tokens: int = 0
    seconds: float = 0.0
    prompt: int = 0
    cached: int = 0
    calls: int = 0

    def add(self, usage: Usage, seconds: float) -> None:
        self.tokens += usage.completion_tokens
        self.seconds += seconds
        self.prompt += usage.prompt_tokens
        self.cached += usage.cached_tokens
        self.calls += usage.model_calls

    @property
    def per_token(self) -> float:
        return self.seconds / max(self.tokens, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="best-of-n samples")
    parser.add_argument("--width", type=int, default=2, help="beams kept")
    parser.add_argument("--expansions", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/gsm8k_train.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/tree_speed.md")
    args = parser.parse_args()

    task = get_task("gsm8k")
    records = task.load(args.data, limit=args.questions)
    model = load_model(args.model)
    load = [os.getloadavg()[0]]
    names = ["best-of-n", "beam (no-model scorer)", "beam (policy as judge)"]
    tallies = {name: Tally() for name in names}
    for i, record in enumerate(records):
        problem = task.problem(record)
        bon = get_scheme(f"best-of-n@{args.n}", seed=i, max_tokens=args.max_tokens)
        start = time.perf_counter()
        result = bon(problem, model=model)
        tallies[names[0]].add(result.usage, time.perf_counter() - start)
        budget = max(result.usage.completion_tokens, 1)
        for name, scorer in zip(names[1:], ("uniform", "judge"), strict=True):
            beam = get_scheme(f"beam@{args.width}:expansions={args.expansions}", seed=i,
                              token_budget=budget, scorer=scorer)
            start = time.perf_counter()
            result = beam(problem, model=model)
            tallies[name].add(result.usage, time.perf_counter() - start)
        print(i, {k: f"{t.per_token * 1000:.1f} ms/tok" for k, t in tallies.items()}, flush=True)
    model.close()
    load.append(os.getloadavg()[0])
    write(args, tallies, load)


def write(args: argparse.Namespace, tallies: dict[str, Tally], load: list[float]) -> None:
    base = tallies["best-of-n"].per_token
    lines = [
        "# Beam search vs best-of-N: time per generated token",
        "",
        f"`{args.model}`, first {args.questions} GSM8K train questions; best-of-n@{args.n} "
        f"(chains of ≤ {args.max_tokens} tokens), beam@{args.width} with {args.expansions} "
        "expansions per beam and best-of-n's token spend on that question as its budget. "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} → "
        f"{load[1]:.1f}.",
        "",
        "    flock /tmp/ponder-bench.lock .venv/bin/python benchmarks/tree_speed.py "
        f"--model {args.model} --questions {args.questions} --n {args.n} --width {args.width} "
        f"--expansions {args.expansions} --max-tokens {args.max_tokens}",
        "",
        "| scheme | generated tokens | seconds | ms / generated token | vs best-of-n | model calls "
        "| prompt tokens prefilled | prompt tokens reused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in tallies.items():
        lines.append(f"| {name} | {t.tokens:,} | {t.seconds:.1f} | {t.per_token * 1000:.1f} | "
                     f"{t.per_token / base:.2f}× | {t.calls} | {t.prompt - t.cached:,} | "
                     f"{t.cached:,} |")
    lines += ["", "Prompt tokens count every request's prompt (for beam, the chat prompt plus the "
              "path so far); \"reused\" ones came from KV the backend held (a prompt cached "
              "earlier, or a parent step kept with `keep_kv`), \"prefilled\" ones were computed. "
              "The judge's prompts (the policy's conversation, the path, then the judge's "
              "question) count in the judge row."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
