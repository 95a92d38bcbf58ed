"""Aggregation: sample N chains, merge the k best into one solution (Graph of Thoughts'
Aggregate operation, Besta et al. 2024, arXiv:2308.09687; Mixture-of-Agents, Wang et al. 2024,
arXiv:2406.04692, and optillm's `moa` with one layer and no separate critique call).

  1. Sample `n` chains in one batched call and score each with the scorer (default
     `confidence`, the policy's own mean token probability, as in best-of-n).
  2. Keep the `k` best (GoT's KeepBestN): chains with an answer first, then by score.
  3. Ask the policy to merge them: "here are candidate solutions, some may be wrong; write one
     correct solution" — the merged chain's prompt holds the k candidates.
  4. Score the merged chain with the same scorer (GoT scores every thought, merged ones
     included). The answer is the merged chain's, unless it has none or scores lower than the
     best candidate: then the best candidate's.

Trace: the candidates are roots; the merged chain is a root too (it has k parents, and a node
has one), with its sources' ids in `meta["sources"]`, best first as the prompt shows them.
The chosen path is [merged] or [best].

Departures: GoT repeats aggregate/score/keep over several rounds and scores with task-specific
prompts; here one round. The budget keeps one chain's worth for the merge: candidates are
sampled only as far as the budget can still pay for the merge after them. Confidence scores a
merged chain under the merge prompt, where copying a candidate is easy, so it tends to run
higher than the candidates' scores; a judge or rule scorer does not have that bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Message, Node, Result
from ponder.schemes.base import Run, ScoredConfig

INTRO = "Here are {k} candidate solutions to this problem. Some of them may be wrong."
MERGE = ("Compare the candidates, find their mistakes, and write one correct solution, ending "
         "with the final answer in \\boxed{}.")  # last, next to the reply (as moa.py)


@dataclass
class Config(ScoredConfig):
    n: int = 4  # candidates sampled
    token_budget: int | None = None  # most completion tokens; null: (n + 1) x max_tokens
    k: int = 3  # candidates merged
    scorer: str = "confidence"  # ranks candidates and the merge: confidence, judge, rule, ...

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ConfigError("k", self.k, "merge 1 or more candidates")
        if self.token_budget is None:
            self.token_budget = (self.n + 1) * self.max_tokens


def run(problem: Problem, r: Run, config: Config) -> Result:
    scorer = r.step_scorer(config.scorer)
    logprobs = 0 if scorer.needs_logprobs else None
    afford = r.affordable(config.n + 1)  # the candidates and the merge, or fewer candidates
    n = min(config.n, max(afford - 1, 1)) if afford else 0
    completions = r.sample(problem.messages, n, logprobs=logprobs) if n else []
    candidates = [r.add_chain(c, problem, kind="candidate") for c in completions]
    if not candidates:
        return r.finish(None, None)
    r.score_chains(scorer, problem, candidates, completions)
    ranked = sorted(candidates, key=rank)
    best, top = ranked[0], ranked[: config.k]
    r.trace.meta["candidates"] = len(candidates)
    if r.cancelled or r.affordable(1) == 0:
        return r.finish(best, best.answer)  # no budget left for the merge

    [c] = r.sample(merge_messages(problem, top), 1, logprobs=logprobs)
    merged = r.add_chain(c, problem, kind="merged", sources=[nd.id for nd in top])
    r.score_chains(scorer, problem, [merged], [c])
    # an unscorable merge loses to a scored candidate; against an unscorable one it stands
    beaten = best.score is not None and (merged.score is None or merged.score < best.score)
    keep = merged.answer is not None and not beaten
    r.trace.meta["merged"] = keep
    return r.finish(merged, merged.answer) if keep else r.finish(best, best.answer)




def rank(node: Node) -> tuple[bool, bool, float, int]:
    """Sort key, best first: an answer, then a score, then the higher score, then sampled first."""
    return (node.answer is None, node.score is None, -(node.score or 0.0), node.id)


def merge_messages(problem: Problem, top: list[Node]) -> list[Message]:
    """The task's own prompt, with the candidates and the merge request after the question."""
    shown = "\n\n".join(f"Candidate {i + 1}:\n{nd.text.strip()}" for i, nd in enumerate(top))
    *head, last = problem.messages
    asked = f"{last['content']}\n\n{INTRO.format(k=len(top))}\n\n{shown}\n\n{MERGE}"
    return [*head, {**last, "content": asked}]
