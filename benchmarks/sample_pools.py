"""What the sample pools of a `ponder eval --share-samples` run say about voting.

Self-consistency can only be as good as the samples it votes over. For every question × seed
whose self-consistency@N row is stored (its trace holds all N chains, each with its extracted
answer), this reads the chains back and reports, in Markdown:

  * sample accuracy: the share of single chains that are right (what one sampled chain scores);
  * pass@k: a right answer among the first k chains (the ceiling of any selection over them);
  * majority@k: the vote over the first k chains, re-counted here (self-consistency@k);
  * agreement: the share of chains that give the most common answer; chains cut at max_tokens;
  * adaptive: how many chains the adaptive rows drew, and their accuracy and tokens against
    self-consistency@N on the same question × seed;
  * what-ifs (`--sweep`): adaptive's Beta criterion replayed over each pool at other
    confidences and batch sizes (the accuracy and share of self-consistency@N's tokens each
    setting would have had on these very chains); and other selections over the first k chains
    of each pool: majority, confidence-weighted majority (best-of-n's default) and the single
    most confident chain, from the token log-probabilities the pool stored with each sample.

Nothing is generated: it reads the results file. Usage:

    .venv/bin/python benchmarks/sample_pools.py runs/gsm8k_test200.db [--positions :100] [--sweep]

A sweep run on a test split is an analysis, not a tuning: choose settings on a train split.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ponder.core.problem import Problem
from ponder.core.protocols import Candidate
from ponder.core.types import Node, Trace
from ponder.eval.report import parse_positions, wilson
from ponder.eval.runner import task_of
from ponder.eval.store import Row, Store
from ponder.schemes.adaptive import Config as AdaptiveConfig
from ponder.schemes.adaptive import stopping_reason
from ponder.schemes.vote import tally
from ponder.scorers.confidence import Confidence
from ponder.tasks import Task


def pct(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k / n:.1%} [{low:.1%}–{high:.1%}]" if n else "—"


def chains(trace: str) -> list[Node]:
    """The sampled chains of a stored self-consistency or adaptive trace, in sample order."""
    return sorted(Trace.from_dict(json.loads(trace)).nodes, key=lambda node: node.id)


def majority(nodes: list[Node], problem: Problem) -> str | None:
    """The vote self-consistency takes over these chains (`ponder.schemes.vote.tally`)."""
    ranked = tally(nodes, problem)
    return ranked[0].answer if ranked else None


def replay(nodes: list[Node], problem: Problem, config: AdaptiveConfig) -> list[Node]:
    """The chains adaptive (`ponder.schemes.adaptive`) would draw from this pool, in order."""
    drawn = 0
    while drawn < len(nodes):
        drawn = min(drawn + config.batch, len(nodes))
        votes = [a.votes for a in tally(nodes[:drawn], problem)]
        if stopping_reason(votes, drawn, config) is not None:
            break
    return nodes[:drawn]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--positions", help="START:STOP, e.g. :100")
    parser.add_argument("--scheme", default="self-consistency@16",
                        help="the widest self-consistency scheme in the file")
    parser.add_argument("--sweep", action="store_true",
                        help="replay adaptive's stopping rule at other confidences and batches")
    args = parser.parse_args()
    keep = parse_positions(args.positions) if args.positions else None

    with Store.read(args.db) as store:
        meta = store.meta()
        rows = [r for r in store.rows() if keep is None or r.position in keep]
        drawn_samples = store.samples({r.question_id for r in rows}) if args.sweep else {}
    task = task_of(meta)
    problem = Problem(question="", messages=(), extract=task.extract, key=task.key)
    pools = [(r, chains(r.trace)) for r in rows if r.scheme == args.scheme]
    if not pools:
        raise SystemExit(f"{args.db}: no {args.scheme} rows" + (f" at {args.positions}"
                                                                 if args.positions else ""))
    n = min(len(c) for _, c in pools)
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= n]

    right = [[c.answer is not None and task.check(c.answer, r.gold) for c in cs]
             for r, cs in pools]
    print(f"**{meta['task']} ({meta.get('split')}) · {args.scheme} pools · {len(pools)} "
          f"question × seed pools of {n} chains · {args.db}"
          + (f" · questions {args.positions}" if args.positions else "") + "**\n")
    print("| k | pass@k (any right among the first k) | majority@k | stored row agrees |")
    print("|---:|---|---|---:|")
    for k in ks:
        any_right = sum(any(rs[:k]) for rs in right)
        won = [(r, (v := majority(cs[:k], problem)) is not None and task.check(v, r.gold))
               for r, cs in pools]
        stored = {(q.question_id, q.seed): q.correct for q in rows
                  if q.scheme == f"self-consistency@{k}"}
        agree = [stored[(r.question_id, r.seed)] == ok for r, ok in won
                 if (r.question_id, r.seed) in stored]
        print(f"| {k} | {pct(any_right, len(pools))} | {pct(sum(ok for _, ok in won), len(pools))}"
              f" | {f'{sum(agree)}/{len(agree)}' if agree else '—'} |")

    samples = sum(len(rs) for rs in right)
    shares = [max((c.votes for c in tally(cs, problem)), default=0) / len(cs) for _, cs in pools]
    cut = sum(c.finish_reason == "length" for _, cs in pools for c in cs)
    tokens = [c.tokens for _, cs in pools for c in cs]
    print(f"\nSingle chains: {pct(sum(map(sum, right)), samples)} right of {samples}; "
          f"{cut / samples:.1%} cut at max_tokens; {statistics.mean(tokens):.0f} tokens on "
          f"average. The most common answer holds {statistics.mean(shares):.0%} of a pool's "
          f"chains on average (median {statistics.median(shares):.0%}).")

    adaptive = {(r.question_id, r.seed): r for r in rows if r.scheme.startswith("adaptive")}
    paired = [(adaptive[(r.question_id, r.seed)], r) for r, _ in pools
              if (r.question_id, r.seed) in adaptive]
    if paired:
        drawn = Counter(len(chains(a.trace)) for a, _ in paired)
        a_right = sum(a.correct for a, _ in paired)
        s_right = sum(s.correct for _, s in paired)
        ratio = sum(a.completion_tokens for a, _ in paired) / sum(
            s.completion_tokens for _, s in paired)
        both = defaultdict(int)
        for a, s in paired:
            both[(a.correct, s.correct)] += 1
        print(f"\nAdaptive on the same {len(paired)} question × seed pools: chains drawn "
              + ", ".join(f"{k}: {v}" for k, v in sorted(drawn.items()))
              + f"; accuracy {pct(a_right, len(paired))} vs {args.scheme} "
              f"{pct(s_right, len(paired))}; tokens {ratio:.0%} of {args.scheme}'s. "
              f"Right only with adaptive: {both[(1, 0)]}, only with {args.scheme}: "
              f"{both[(0, 1)]}.")

    if args.sweep:
        def won(nodes: list[Node], gold: str) -> bool:
            v = majority(nodes, problem)
            return v is not None and task.check(v, gold)

        full = sum(c.tokens for _, cs in pools for c in cs)
        whole = pct(sum(won(cs, r.gold) for r, cs in pools), len(pools))
        print(f"\nAdaptive's stopping rule replayed over the same {len(pools)} pools (what-if; "
              f"the full pool is {args.scheme}: {whole}):\n")
        print("| batch | confidence | give up after | accuracy | mean chains "
              "| tokens vs full pool |")
        print("|---:|---:|---:|---|---:|---:|")
        settings = [(batch, confidence, 0) for batch in (1, 2, 4)
                    for confidence in (0.95, 0.9, 0.8, 0.7)]
        settings += [(4, confidence, 4) for confidence in (0.95, 0.8)]  # ≤ 2 of 4 agree: stop
        for batch, confidence, give_up in settings:
            config = AdaptiveConfig(n=n, batch=batch, confidence=confidence,
                                    give_up_after=give_up)
            drawn = [(r, replay(cs, problem, config)) for r, cs in pools]
            right_k = sum(won(d, r.gold) for r, d in drawn)
            print(f"| {batch} | {confidence} | {give_up or '—'} | {pct(right_k, len(drawn))}"
                  f" | {statistics.mean(len(d) for _, d in drawn):.1f}"
                  f" | {sum(c.tokens for _, d in drawn for c in d) / full:.0%} |")
        selections(pools, drawn_samples, problem, task, ks, rows)


def selections(pools: list[tuple[Row, list[Node]]], samples: dict[str, dict[str, dict[int, Any]]],
               problem: Problem, task: Task, ks: list[int], rows: list[Row]) -> None:
    """Majority, confidence-weighted majority and the most confident chain over the first k
    chains of every pool whose samples (with token log-probabilities) are stored."""
    logprobs = {(q, c.text): c.token_logprobs for q, pools_of_q in samples.items()
                for pool in pools_of_q.values() for c in pool.values()}
    scored = [(r, cs, [logprobs.get((r.question_id, c.text)) for c in cs]) for r, cs in pools]
    scored = [(r, cs, lps) for r, cs, lps in scored if all(lp for lp in lps)]
    if not scored:
        return
    confidence = Confidence()
    print(f"\nSelections over the first k chains of the same pools ({len(scored)} of "
          f"{len(pools)} have their samples' log-probabilities stored); confidence = the "
          "geometric-mean token probability (`ponder.scorers.confidence`):\n")
    print("| k | majority | confidence-weighted majority | most confident chain |"
          " stored best-of-n@k agrees |")
    print("|---:|---|---|---|---:|")
    for k in ks:
        if k == 1:
            continue
        wins = {"majority": 0, "weighted": 0, "plain": 0}
        stored = {(q.question_id, q.seed): q.correct for q in rows
                  if q.scheme == f"best-of-n@{k}"}
        agree = []
        for r, cs, lps in scored:
            nodes = cs[:k]
            scores = confidence.score([
                Candidate("", n.text, (n.text,), problem, n.answer, tuple(lp))
                for n, lp in zip(nodes, lps[:k], strict=True)])
            weighted = tally(nodes, problem, weights=[s or 0.0 for s in scores])
            best = max(range(k), key=lambda i: (scores[i] or 0.0, -i))
            picks = {"majority": majority(nodes, problem),
                     "weighted": weighted[0].answer if weighted else None,
                     "plain": nodes[best].answer}
            for name, answer in picks.items():
                wins[name] += answer is not None and task.check(answer, r.gold)
            if (r.question_id, r.seed) in stored:
                ok = picks["weighted"] is not None and task.check(picks["weighted"], r.gold)
                agree.append(stored[(r.question_id, r.seed)] == ok)
        print(f"| {k} | {pct(wins['majority'], len(scored))} | {pct(wins['weighted'], len(scored))}"
              f" | {pct(wins['plain'], len(scored))} | "
              f"{f'{sum(agree)}/{len(agree)}' if agree else '—'} |")


if __name__ == "__main__":
    main()
