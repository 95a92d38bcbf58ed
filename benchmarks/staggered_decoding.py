"""Decoding speed when sequences start and end at different times, as in an evaluation.

benchmarks/batched_decoding.py starts N samples together in slots 0..N-1 and ends them together.
An evaluation does not: `--concurrency` questions each ask for a few samples of different
lengths, and a sample starts in whatever slot the last one to finish freed. This benchmark runs
that shape: `--threads` workers, each asking `--rounds` times for `--n` seeded samples of one
GSM8K train question (temperature 0.7, top-p 0.95, top-k 40) with a length limit drawn from
[--min-tokens, --max-tokens] (`ignore_eos`, so the lengths are the drawn ones), on one model with
`--slots` decoding slots. It reports generated tokens per wall second, prefills included.

    flock /tmp/ponder-bench.lock .venv/bin/python benchmarks/staggered_decoding.py
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time

from ponder.core.types import GenerationRequest, SamplingParams
from ponder.models.catalog import load_model
from ponder.tasks import get_task

DATA = "../shared/data/gsm8k_train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--threads", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--min-tokens", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=160)
    args = ap.parse_args()

    task = get_task("gsm8k")
    records = list(task.load(DATA, limit=args.threads))
    model = load_model(args.model, n_seq_max=args.slots, n_ctx=1024)
    lengths = random.Random(0)
    plan = [[lengths.randint(args.min_tokens, args.max_tokens) for _ in range(args.rounds)]
            for _ in range(args.threads)]
    tokens = [0] * args.threads

    def work(t: int) -> None:
        for r, limit in enumerate(plan[t]):
            params = SamplingParams(n=args.n, temperature=0.7, top_p=0.95, top_k=40,
                                    max_tokens=limit, seed=1000 * t + r, ignore_eos=True)
            [outs] = model.generate([GenerationRequest(params, messages=task.render(
                records[t].question))])
            tokens[t] += sum(c.completion_tokens for c in outs)

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    print(json.dumps({"tokens": sum(tokens), "seconds": round(seconds, 1),
                      "tok_per_s": round(sum(tokens) / seconds, 1), **vars(args)}))


if __name__ == "__main__":
    main()
