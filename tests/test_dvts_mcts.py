"""DVTS and MCTS on the scripted fake tree of test_tree (best path d0c3 -> d1c2 -> d2c1 ->
\\boxed{7}), plus small trees whose every number is checked by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from test_tree import BEST_PATH, PROBLEM, Ledger, chosen_texts, path_of, script, step_scorer

from ponder.core.errors import ConfigError
from ponder.core.types import Node, Result
from ponder.models.fake import ScriptedModel
from ponder.schemes import dvts, get_scheme, mcts

PROBLEM_PROMPT = "<|user|>\nq\n<|assistant|>\n"  # PROBLEM as the fake renders it


def scorer_of(table: dict[str, float]) -> Callable[..., list[float | None]]:
    """A step scorer that looks each path's last step up in `table` (0.1 if absent)."""
    def score(prompts: Sequence[str], completions: Sequence[str], *,
              steps: Sequence[Sequence[str]], **kw: Any) -> list[float | None]:
        return [table.get(path[-1].strip(), 0.1) for path in steps]
    return score


# -- DVTS ------------------------------------------------------------------------------------

@pytest.mark.parametrize("selection", ["best", "vote"])
def test_dvts_finds_the_best_path(selection: str) -> None:
    model = ScriptedModel(script)
    result = get_scheme("dvts", n=8, expansions=4, selection=selection)(
        PROBLEM, model=model, scorer=step_scorer)
    assert result.answer == "7"
    assert chosen_texts(result) == BEST_PATH
    # the root: one request for all 8 first steps; then one request per subtree per depth
    assert [[r.params.n for r in call] for call in model.calls] == [[8], [4, 4], [4, 4], [4, 4]]
    assert result.trace.meta["subtrees"] == 2
    if selection == "vote":  # both subtrees reach \boxed{7} (value 1.0) and its 3 siblings (0.1)
        assert result.trace.meta["votes"] == {"7": 2, "3": 2, "5": 2, "9": 2}


def wide_script(prompt: str, i: int) -> str:
    """Child i of a depth-d prefix writes "d{d}c{i}"; sample 5 of the root answers at once."""
    depth = path_of(prompt).count("\n\n")
    if depth == 0 and i == 5:
        return "it is \\boxed{5}"
    if depth == 2:
        return f"so \\boxed{{{i}}}"
    return f"d{depth}c{i}\n\nand more"


def test_dvts_subtrees_are_independent_and_batched() -> None:
    # subtree 0 holds root samples 0-3 and keeps d0c1; subtree 1 holds 4-7, where the answer
    # \boxed{5} scores best, so subtree 1 ends at depth 1 while subtree 0 goes on alone
    model = ScriptedModel(wide_script)
    scorer = scorer_of({"d0c1": 0.8, "d0c2": 0.7, "it is \\boxed{5}": 0.95, "d1c3": 0.6,
                        "so \\boxed{0}": 0.5})
    result = get_scheme("dvts", n=8, expansions=4, temperature=0.0)(
        PROBLEM, model=model, scorer=scorer)
    nodes = result.trace.nodes
    first = [n for n in nodes if n.parent is None]
    assert [n.meta["subtree"] for n in first] == [0] * 4 + [1] * 4
    assert [call[0].prefix for call in model.calls[1:]] == [
        f"{PROBLEM_PROMPT}d0c1\n\n", f"{PROBLEM_PROMPT}d0c1\n\nd1c3\n\n"]
    assert [len(call) for call in model.calls] == [1, 1, 1]  # subtree 1 ended at depth 1
    assert all(n.meta["subtree"] == 0 for n in nodes if n.parent is not None)
    # completed: \boxed{5} (0.95) and subtree 0's four answers; the best is \boxed{5}
    assert result.trace.meta["completed"] == 5
    assert result.answer == "5"


@pytest.mark.parametrize("budget", [8, 20, 40])
def test_dvts_never_starts_a_step_its_budget_cannot_finish(budget: int) -> None:
    model = Ledger()
    result = get_scheme("dvts", n=8, expansions=4, max_tokens=8, token_budget=budget)(
        PROBLEM, model=model, scorer=step_scorer)
    assert model.asks and all(asked <= budget - before for asked, before in model.asks)
    assert result.usage.completion_tokens == model.used <= budget


# -- MCTS ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "c", "n"), [("puct", 1.0, 8), ("uct", 0.2, 16),
                                              ("uct", 1.0, 100)])
@pytest.mark.parametrize("final", ["visits", "value"])
def test_mcts_finds_the_best_path(rule: str, c: float, n: int, final: str) -> None:
    result = get_scheme("mcts", n=n, expansions=4, selection_rule=rule, c_puct=c, final=final)(
        PROBLEM, model=ScriptedModel(script), scorer=step_scorer)
    assert result.answer == "7"
    assert chosen_texts(result) == BEST_PATH


# The hand-checked trees: A = d0c0, B = d0c1 under the root; B's children d1c0, d1c1; below
# d1c0, d2c0 and d2c1. With aggregate "last" a node's path value is its step score.
HAND = scorer_of({"d0c0": 0.2, "d0c1": 0.6, "d1c0": 0.5, "d1c1": 0.3, "d2c0": 0.4,
                  "d2c1": 0.8})


def visits_and_q(result: Result) -> dict[str, tuple[int, float]]:
    """Each visited node's (visits, Q), by its path, e.g. "d0c1/d1c0"."""
    def name(node: Node) -> str:
        return "/".join(result.trace.nodes[i].text.strip() for i in result.trace.path(node.id))
    return {name(n): (n.visits, n.meta["q"]) for n in result.trace.nodes if n.visits}


def test_mcts_uct_statistics_by_hand() -> None:
    # 1. expand the root: A (0.2), B (0.6); both unvisited, B scores higher: B gets 0.6.
    # 2. the root (N=1): A is unvisited, so A first: A gets 0.2 (no model call).
    # 3. the root (N=2): A 0.2 + sqrt(ln 2 / 1) = 1.033, B 0.6 + 0.833 = 1.433 -> B, a visited
    #    leaf: expand it into d1c0 (0.5), d1c1 (0.3); d1c0 gets 0.5. B: Q = (0.6+0.5)/2 = 0.55.
    # 4. the root (N=3): A 0.2 + sqrt(ln 3 / 1) = 1.248, B 0.55 + sqrt(ln 3 / 2) = 1.291 -> B;
    #    then d1c1, unvisited: it gets 0.3. B: N = 3, Q = (0.6+0.5+0.3)/3 = 0.4667.
    model = ScriptedModel(script)
    result = get_scheme("mcts", n=4, expansions=2, selection_rule="uct")(
        PROBLEM, model=model, scorer=HAND)
    stats = visits_and_q(result)
    assert stats.keys() == {"d0c0", "d0c1", "d0c1/d1c0", "d0c1/d1c1"}
    assert stats["d0c0"] == (1, pytest.approx(0.2))
    assert stats["d0c1"] == (3, pytest.approx(1.4 / 3))
    assert stats["d0c1/d1c0"] == (1, pytest.approx(0.5))
    assert stats["d0c1/d1c1"] == (1, pytest.approx(0.3))
    assert [call[0].prefix for call in model.calls] == [PROBLEM_PROMPT,
                                                       f"{PROBLEM_PROMPT}d0c1\n\n"]
    assert result.trace.meta["iterations"] == 4
    assert result.answer is None  # no answer yet: the most visited path ends at d1c0
    assert chosen_texts(result) == ["d0c1\n\n", "d1c0\n\n"]


def test_mcts_puct_statistics_by_hand() -> None:
    # priors: A 0.25, B 0.75; under B: d1c0 0.625, d1c1 0.375; under d1c0: 1/3, 2/3.
    # 1. expand the root; all PUCT scores are 0 (N_root = 0), B scores higher: B gets 0.6.
    # 2. the root (N=1): A 0.25·1/1 = 0.25, B 0.6 + 0.75·1/2 = 0.975 -> B, a visited leaf:
    #    expand it; d1c0 0.625·1 beats d1c1 0.375: d1c0 gets 0.5. B: Q = 0.55.
    # 3. the root (N=2): A 0.25·1.414 = 0.354, B 0.55 + 0.75·1.414/3 = 0.904 -> B;
    #    under B (N=2): d1c0 0.5 + 0.625·1.414/2 = 0.942, d1c1 0.375·1.414 = 0.530 -> d1c0,
    #    a visited leaf: expand it; d2c1 (prior 2/3) gets 0.8.
    #    d1c0: Q = (0.5+0.8)/2 = 0.65; B: Q = (0.6+0.5+0.8)/3 = 0.6333.
    result = get_scheme("mcts", n=3, expansions=2, selection_rule="puct")(
        PROBLEM, model=ScriptedModel(script), scorer=HAND)
    assert visits_and_q(result) == {
        "d0c1": (3, pytest.approx(1.9 / 3)),
        "d0c1/d1c0": (2, pytest.approx(0.65)),
        "d0c1/d1c0/d2c1": (1, pytest.approx(0.8)),
    }


def test_mcts_stops_when_every_leaf_is_terminal() -> None:
    model = ScriptedModel(lambda prompt, i: f"\\boxed{{{i}}}")
    result = get_scheme("mcts", n=16, expansions=3)(
        PROBLEM, model=model, scorer=scorer_of({"\\boxed{1}": 0.9}))
    assert result.answer == "1"
    assert result.trace.meta["iterations"] == 1 and len(model.calls) == 1


def test_mcts_rollouts_complete_the_chain_greedily() -> None:
    model = ScriptedModel(script)
    result = get_scheme("mcts", n=2, expansions=2, value="rollout", max_depth=4)(
        PROBLEM, model=model, scorer=step_scorer)
    # expand the root, roll d0c0 out; then visit d0c1 and roll it out: 3 calls
    expand, *rollouts = model.calls
    assert expand[0].params.n == 2 and expand[0].params.stop == ("\n\n",)
    assert [(r.params.n, r.params.temperature, r.params.stop, r.keep_kv)
            for [r] in rollouts] == [(1, 0.0, (), False)] * 2
    assert rollouts[0][0].params.max_tokens == 256 * 3  # the 3 steps left after depth 1
    first = result.trace.nodes[0]
    assert first.meta["rollout"]["answer"] is None
    assert first.meta["q"] == pytest.approx(0.1)  # the rollout's last step scores 0.1


@pytest.mark.parametrize("value", ["scorer", "rollout"])
@pytest.mark.parametrize("budget", [8, 20, 40])
def test_mcts_never_starts_a_step_its_budget_cannot_finish(budget: int, value: str) -> None:
    model = Ledger()
    result = get_scheme("mcts", n=32, expansions=3, max_tokens=8, max_depth=4,
                        token_budget=budget, value=value)(PROBLEM, model=model, scorer=step_scorer)
    assert model.asks and all(asked <= budget - before for asked, before in model.asks)
    assert result.usage.completion_tokens == model.used <= budget


@pytest.mark.parametrize(("make", "settings", "param"), [
    (dvts.Config, {"n": 6, "expansions": 4}, "n"),
    (dvts.Config, {"selection": "max"}, "selection"),
    (mcts.Config, {"selection_rule": "ucb"}, "selection_rule"),
    (mcts.Config, {"value": "mc"}, "value"),
    (mcts.Config, {"final": "best"}, "final"),
    (mcts.Config, {"c_puct": -1.0}, "c_puct"),
    (mcts.Config, {"expansions": 0}, "expansions"),
])
def test_bad_settings_are_config_errors(make: Any, settings: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError, match=param):
        make(**settings)
