"""The tree and graph schemes on a real model (slow: SmolLM2-135M through llama.cpp).

The scripted fake checks each scheme's logic (test_tree, test_dvts_mcts, test_refine_aggregate);
these check what only a real backend shows: the judge reads real top logprobs, a search stays
inside its token budget with real step lengths, beam, DVTS and MCTS continue kept KV instead of
prefilling each path again, and the trace of a real search is a well-formed tree that survives
the JSON round trip `ponder solve --trace` / `ponder trace` make."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_llamacpp import small_model

from ponder.core.types import Result, Trace
from ponder.schemes import get_scheme
from ponder.tasks import get_task
from ponder.trace_view import parse_trace, render

pytestmark = pytest.mark.slow
QUESTION = ("A baker makes 12 cakes a day for 5 days. She sells 40 of them and gives away half "
            "of the rest. How many cakes are left?")

# Small budgets. A step cut by max_tokens ends its path, so steps get room for a paragraph.
SPECS = {
    "beam": "beam@2:expansions=2:max_tokens=128:max_depth=4:token_budget=1200",
    "dvts": "dvts@4:expansions=2:max_tokens=128:max_depth=4:token_budget=1200",
    "mcts": "mcts@4:expansions=2:max_tokens=128:max_depth=4:token_budget=1200",
    "tot": "tot@2:generator=sample:n_generate=2:n_evaluate=1:value_tokens=16:max_tokens=128:"
           "max_depth=3:token_budget=1200",
    "refine": "refine:rounds=1:plan_tokens=64:critique_tokens=48:max_tokens=96:token_budget=400",
    "aggregate": "aggregate@3:max_tokens=96:token_budget=1200",
}
KEEPS_KV = {"beam", "dvts", "mcts"}  # they expand a node from its parent's kept KV


@pytest.fixture(scope="module")
def smol() -> Any:
    with small_model(n_ctx=2048, n_seq_max=8, cache_prompts=16) as lm:
        yield lm


def assert_well_formed(trace: Trace) -> None:
    """Ids are positions, parent and children agree, and the chosen path runs down from a root."""
    for i, node in enumerate(trace.nodes):
        assert node.id == i
        for child in node.children:
            assert trace.nodes[child].parent == node.id
        if node.parent is not None:
            assert node.id in trace.nodes[node.parent].children
    assert trace.chosen, "no chosen path"
    assert trace.path(trace.chosen[-1]) == trace.chosen


@pytest.mark.parametrize("name", list(SPECS))
def test_scheme_on_a_real_model(smol: Any, name: str) -> None:
    scheme = get_scheme(SPECS[name], seed=7)
    smol.clear_cache()
    result: Result = scheme(get_task("math").problem(QUESTION), model=smol)
    usage, trace = result.usage, result.trace
    budget = scheme.config.token_budget
    assert budget is not None  # every spec above sets one
    assert 0 < usage.completion_tokens <= budget, (usage, budget)
    assert usage.model_calls >= 2  # a search, not one chain
    assert len(trace.nodes) >= (2 if name == "refine" else 3)  # a plan accepted at once: 2
    assert_well_formed(trace)
    assert result.reasoning.strip()
    if result.answer is not None:
        assert result.finish_reason == "stop"
    if name in KEEPS_KV:
        # Expansions continue a kept step and the judge's probes continue the step they score,
        # so most prompt tokens are reused. Over seeds 7-9, searches 3-4 steps deep reused
        # 80-86% with kept KV, and 71-74% with keep_kv off: held prompts still spare the path
        # up to the parent, but every step is prefilled again (about twice the prefill tokens).
        # A search that ended at its first steps has less to reuse (71-73%).
        deep = max(n.meta.get("depth", 0) for n in trace.nodes) >= 3
        assert usage.cached_tokens > (0.78 if deep else 0.6) * usage.prompt_tokens, usage
    if name in ("beam", "dvts", "mcts", "refine"):  # the policy as judge: P(Yes), in [0, 1]
        scores = [n.score for n in trace.nodes if n.score is not None]
        assert scores and all(0.0 <= s <= 1.0 for s in scores)
        if name != "refine":  # one plan may be all it judged
            assert len(set(scores)) > 1  # real logprobs, not a constant
    again = parse_trace(json.loads(json.dumps(trace.to_dict())))
    assert [n.text for n in again.nodes] == [n.text for n in trace.nodes]
    assert again.chosen == trace.chosen
    _, left_out = render(again)
    assert left_out == 0
