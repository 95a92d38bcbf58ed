"""The contracts the schemes stand on, on fakes: the scorer contract, models by role and their
metering, typed trace nodes, and the sampled/forced mask."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from test_tree import BEST_PATH, PROBLEM, SCORES, chosen_texts, script

from ponder.core.errors import ConfigError, UnknownName
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate, Scorer
from ponder.core.types import Completion, GenerationRequest, Trace, Usage, splice
from ponder.models import catalog
from ponder.models.fake import ScriptedModel, tokenize
from ponder.schemes import Entry, Scheme, get_scheme
from ponder.schemes.base import Run, SchemeConfig
from ponder.scorers import RewardFunction, Uniform
from ponder.verifiers import extract_answer

# -- the scorer contract ----------------------------------------------------------------------


def good(text: str) -> bool:
    return any(key in text for key in SCORES)


def confident(text: str) -> float:
    """A completion's total logprob: -0.1 a token for the good steps, -2 a token for others."""
    return (-0.1 if good(text) else -2.0) * len(tokenize(text))


@pytest.mark.parametrize("spec", ["beam@2:expansions=4", "dvts@8:expansions=4",
                                  "mcts@24:expansions=4"])
def test_tree_schemes_score_steps_with_confidence(spec: str) -> None:
    model = ScriptedModel(script, logprob=confident)
    result = get_scheme(f"{spec}:scorer=confidence")(PROBLEM, model=model)
    assert all(r.params.logprobs == 0 for call in model.calls for r in call)
    scored = [n for n in result.trace.nodes if n.score is not None]
    assert scored and len(scored) == len(result.trace.nodes)  # every step scored, none None
    for node in scored:
        assert node.score == pytest.approx(math.exp(-0.1 if good(node.text) else -2.0))
    assert chosen_texts(result) == BEST_PATH
    assert result.trace.meta["scorer"] == "confidence"


class NoLogprobs(ScriptedModel):
    """A backend that returns no logprobs even when asked."""

    def generate(self, requests: Sequence[GenerationRequest], **kw: Any) -> list[list[Completion]]:
        out = super().generate(requests, **kw)
        for cs in out:
            for c in cs:
                c.token_logprobs = None
        return out


NO_CHECKS = Problem(question="q", messages=({"role": "user", "content": "q"},),
                    extract=extract_answer)


@pytest.mark.parametrize(("spec", "model", "says"), [
    pytest.param("beam@2:scorer=confidence", NoLogprobs(script), "logprobs", id="confidence"),
    pytest.param("best-of-n@2", NoLogprobs(["\\boxed{1}"]), "logprobs", id="bon-confidence"),
    pytest.param("beam@2:scorer=rule", ScriptedModel(script), "no check", id="rule-no-checks"),
    pytest.param("best-of-n@2:scorer=rule", ScriptedModel(["\\boxed{1}"]), "no check",
                 id="bon-rule-no-checks"),
])
def test_a_scorer_that_cannot_score_says_so(spec: str, model: ScriptedModel, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        get_scheme(spec)(NO_CHECKS, model=model)
    assert err.value.param == "scorer" and says in str(err.value)


def test_a_scorer_must_return_one_score_per_candidate() -> None:
    def short(prompts: Sequence[str], completions: Sequence[str], **kw: Any) -> list[float]:
        return [1.0]

    with pytest.raises(ConfigError, match="returned 1 scores for 4 candidates"):
        get_scheme("beam@1:expansions=4")(PROBLEM, model=ScriptedModel(script), scorer=short)


def test_scorers_get_typed_candidates_for_chains_and_steps() -> None:
    seen: list[Candidate] = []

    class Spy:
        name, needs_logprobs = "spy", True

        def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
            seen.extend(candidates)
            return [0.5] * len(candidates)

    assert isinstance(Spy(), Scorer)
    model = ScriptedModel(["first step\n\nso \\boxed{4}"])
    get_scheme("best-of-n@2")(PROBLEM, model=model, scorer=Spy())
    chain = seen[0]
    assert chain.steps == ("first step", "so \\boxed{4}") and chain.answer == "4"
    assert chain.problem is PROBLEM and chain.token_logprobs is not None
    assert chain.prompt == model.render_chat(PROBLEM.messages)
    seen.clear()
    get_scheme("beam@1:expansions=2:max_depth=2")(PROBLEM, model=ScriptedModel(script),
                                                  scorer=Spy())
    deep = next(c for c in seen if len(c.steps) == 2)
    assert deep.text == "".join(deep.steps) and deep.steps[0].startswith("d0c")
    assert deep.token_logprobs is not None and len(deep.token_logprobs) == len(
        tokenize(deep.steps[1].removesuffix("\n\n")))  # the newest step's tokens only


def test_reward_functions_and_named_scorers_share_the_contract() -> None:
    fn = RewardFunction(lambda prompts, completions, **kw: [len(c) for c in completions])
    [c] = [Candidate("p", "abc", ("abc",), PROBLEM)]
    assert fn.score([c]) == [3] and fn.name == "<lambda>" and not fn.needs_logprobs
    assert Uniform().score([c, c]) == [0.5, 0.5]


# -- models by role ---------------------------------------------------------------------------


class Judge(ScriptedModel):
    """Answers every yes/no question with P(Yes) 0.8 (its top logprobs), one token each."""

    def generate(self, requests: Sequence[GenerationRequest], **kw: Any) -> list[list[Completion]]:
        self.calls.append(list(requests))
        top = {"Yes": math.log(0.8), "No": math.log(0.2)}
        return [[Completion("Yes", top_logprobs=[top], completion_tokens=1, prompt_tokens=7)]
                for _ in requests]


def test_each_role_asks_its_own_model_and_is_metered_apart() -> None:
    policy, judge = ScriptedModel(script, name="small"), Judge(["Yes"], name="big")
    result = get_scheme("beam@2:expansions=2:scorer=judge")(
        PROBLEM, model=policy, roles={"judge": judge})
    judged = sum(len(call) for call in judge.calls)
    assert judged and all(r.params.max_tokens > 1 for call in policy.calls for r in call)
    assert all(n.score == pytest.approx(0.8) for n in result.trace.nodes)
    parts = {(p.role, p.model): p for p in result.usage.by_role}
    assert set(parts) == {("policy", "small"), ("judge", "big")}
    assert parts["judge", "big"].completion_tokens == judged
    assert parts["judge", "big"].model_calls == len(judge.calls)
    assert parts["policy", "small"].model_calls == len(policy.calls)
    total = sum(p.completion_tokens for p in parts.values())
    assert total == result.usage.completion_tokens
    assert result.to_dict()["usage"]["by_role"][0]["role"] == "policy"


def test_a_role_without_a_model_is_played_by_the_policy_and_still_metered() -> None:
    plan = ScriptedModel(["1. add\n\n2. box it"], name="one")
    result = get_scheme("refine:rounds=0")(PROBLEM, model=plan)
    assert [n.role for n in result.trace.nodes] == ["planner", "policy"]
    roles = [(p.role, p.model) for p in result.usage.by_role]
    assert roles == [("planner", "one"), ("judge", "one"), ("policy", "one")]


def test_a_planner_writes_the_plan_the_policy_executes() -> None:
    planner = ScriptedModel(["1. multiply 6 by 7"], name="big")
    policy = ScriptedModel(["6 * 7 = 42, \\boxed{42}"], name="small")
    result = get_scheme("refine:rounds=0")(PROBLEM, model=policy,
                                           roles={"planner": planner, "judge": Judge([""])})
    [asked] = policy.calls[0]
    assert asked.messages is not None and "1. multiply 6 by 7" in asked.messages[-1]["content"]
    assert result.answer == "42"
    assert {(p.role, p.model) for p in result.usage.by_role} == {
        ("planner", "big"), ("judge", "fake"), ("policy", "small")}


@pytest.mark.parametrize(("spec", "roles", "error"), [
    ("cot", {"judge"}, ConfigError),
    ("self-consistency@2", {"planner"}, ConfigError),
    ("beam@2", {"oracle"}, UnknownName),
])
def test_roles_a_scheme_does_not_ask_are_refused(spec: str, roles: set[str],
                                                 error: type[Exception]) -> None:
    fake = ScriptedModel(["\\boxed{1}"])
    with pytest.raises(error):
        get_scheme(spec)(PROBLEM, model=fake, roles=dict.fromkeys(roles, fake))


def test_one_model_in_two_roles_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    closes: list[str] = []

    class Counted(ScriptedModel):
        def close(self) -> None:
            closes.append(self.name)

    def load(spec: str, **kw: Any) -> ScriptedModel:
        loads.append(spec)
        return Counted(["x"], name=spec)

    monkeypatch.setattr(catalog, "load_model", load)
    models = catalog.load_models({"policy": "a", "judge": "a", "planner": "b"})
    assert loads == ["a", "b"] and models["policy"] is models["judge"]
    catalog.close_models(models)
    assert sorted(closes) == ["a", "b"]


def test_usage_adds_up_by_role() -> None:
    a, b = Usage(), Usage()
    a.add_completions([Completion("x", completion_tokens=3)], role="policy", model="m")
    b.add_completions([Completion("y", completion_tokens=2)], role="judge", model="m")
    b.add_completions([Completion("z", completion_tokens=1)], role="policy", model="m")
    a += b
    assert [(p.role, p.completion_tokens, p.model_calls) for p in a.by_role] == [
        ("policy", 4, 2), ("judge", 2, 1)]
    assert Usage.from_dict(a.to_dict()) == a


# -- typed nodes ------------------------------------------------------------------------------

def test_typed_node_fields_survive_json_and_old_traces_read_the_same() -> None:
    result = get_scheme("beam@1:expansions=2")(PROBLEM, model=ScriptedModel(script),
                                              scorer=lambda p, c, **kw: [0.5] * len(c))
    again = Trace.from_dict(result.trace.to_dict())
    assert again == result.trace
    leaf = again.nodes[again.chosen[-1]]
    assert (leaf.depth, leaf.terminal, leaf.finish_reason, leaf.role) == (4, True, "stop",
                                                                           "policy")
    old = {"scheme": "beam", "nodes": [
        {"id": 0, "parent": None, "text": "a\n\n", "meta": {"depth": 1, "finish_reason": "stop",
                                                           "terminal": False, "kind": "x"}}]}
    [node] = Trace.from_dict(old).nodes
    assert (node.depth, node.terminal, node.finish_reason, node.meta) == (1, False, "stop",
                                                                          {"kind": "x"})


# -- the sampled/forced mask ------------------------------------------------------------------

TOOL_OUTPUT = "\n```output\n42\n```\n"


def run_with_a_tool(problem: Problem, r: Run, config: SchemeConfig) -> Any:
    """A test scheme: sample up to a code fence's end, insert its 'output', continue."""
    [head] = r.sample(problem.messages, 1, stop=("```\n",), temperature=0.0)
    head.text += "```"  # the stop string was sampled: put it back
    prefix = r.model.render_chat(problem.messages) + head.text + TOOL_OUTPUT
    [tail] = r.sample(None, 1, prefix=prefix, temperature=0.0)
    node = r.add_chain(splice(head, TOOL_OUTPUT, tail), problem)
    return r.finish(node, node.answer)


TOOL = Scheme("tool", Entry(run_with_a_tool, SchemeConfig, "a chain with a tool"),
              SchemeConfig(n=1))


def tool_model() -> ScriptedModel:
    return ScriptedModel(lambda prompt, i: "so \\boxed{42}" if "```output" in prompt
                         else "```python\nprint(6*7)\n```\nignored")


def test_forced_text_is_marked_in_the_completion_and_the_trace() -> None:
    result = TOOL(PROBLEM, model=tool_model())
    [node] = result.trace.nodes
    [(a, b)] = node.forced
    assert node.text[a:b] == TOOL_OUTPUT
    assert node.text == "```python\nprint(6*7)\n```" + TOOL_OUTPUT + "so \\boxed{42}"
    assert result.answer == "42"
    sampled = len(tokenize("```python\nprint(6*7)\n")) + len(tokenize("so \\boxed{42}"))
    assert node.tokens == result.usage.completion_tokens == sampled  # forced text is no token
    assert Trace.from_dict(result.trace.to_dict()).nodes[0].forced == [(a, b)]


def test_splice_keeps_sampled_and_forced_apart() -> None:
    head = Completion("ab", token_ids=[1], completion_tokens=1, token_logprobs=[-1.0],
                      prompt_tokens=5)
    tail = Completion("cd", token_ids=[2], completion_tokens=1, token_logprobs=[-2.0],
                      finish_reason="length", forced=((0, 1),))
    joined = splice(head, "XY", tail)
    assert joined.text == "abXYcd" and joined.forced == ((2, 4), (4, 5))
    assert joined.sampled_text() == "abd" and joined.completion_tokens == 2
    assert (joined.token_ids, joined.token_logprobs, joined.finish_reason) == (
        [1, 2], [-1.0, -2.0], "length")


# -- roles through the server -----------------------------------------------------------------

def test_a_request_names_served_models_for_roles() -> None:
    from fastapi.testclient import TestClient

    from ponder.serve.app import create_app

    small, big = ScriptedModel(script, name="small"), Judge(["Yes"], name="big")
    app = create_app({"small": small, "big": big}, lambda q: PROBLEM)
    c = TestClient(app, raise_server_exceptions=False)

    def ask(**ponder: Any) -> Any:
        return c.post("/v1/chat/completions", json={
            "model": "small", "messages": [{"role": "user", "content": "q"}], "ponder": ponder})

    body = ask(scheme="beam@2:expansions=2:scorer=judge", roles={"judge": "big"}).json()
    parts = {(p["role"], p["model"]): p for p in body["ponder"]["by_role"]}
    assert set(parts) == {("policy", "small"), ("judge", "big")}
    assert parts["judge", "big"]["model_calls"] == len(big.calls) > 0
    for roles, param in [({"judge": "/etc/passwd"}, "ponder.roles.judge"),
                         ({"oracle": "big"}, None), ({"planner": "big"}, "model")]:
        refused = ask(scheme="beam@2:scorer=judge", roles=roles)
        assert refused.status_code == 400, refused.text
        if param:
            assert refused.json()["error"]["param"] == param


# -- roles through `ponder eval`, `ponder report` and `ponder solve` ---------------------------

def test_eval_gives_each_scheme_the_roles_it_asks_and_stores_their_cost(tmp_path: Any) -> None:
    import json

    from ponder.eval.report import read_rows, role_table, summarize, to_markdown
    from ponder.eval.runner import EvalConfig, run_eval

    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": "#### 7"}) + "\n"
                            for i in range(2)))
    cfg = EvalConfig(task="gsm8k", data=data, out=tmp_path / "run.db", model="small",
                     roles={"judge": "big"}, schemes=("cot", "beam@2:expansions=2:scorer=judge"))
    small, big = ScriptedModel(script, name="small"), Judge(["Yes"], name="big")
    run_eval(cfg, model_factory=lambda: {"policy": small, "judge": big}, progress=False)
    meta, rows = read_rows([tmp_path / "run.db"])
    assert meta["roles"] == {"judge": "big"}
    by_scheme = {r.scheme: {(p.role, p.model) for p in r.usage_by_role()} for r in rows}
    assert by_scheme == {"cot": {("policy", "small")},
                         "beam@2:expansions=2:scorer=judge": {("policy", "small"),
                                                             ("judge", "big")}}
    summaries = summarize(rows, order=meta["schemes"])
    table = role_table(summaries)
    assert table is not None and [cells[:3] for cells in table] == [
        ["cot", "policy", "small"], ["beam@2:expansions=2:scorer=judge", "policy", "small"],
        ["beam@2:expansions=2:scorer=judge", "judge", "big"]]
    assert "Cost by role and model" in to_markdown(summaries, meta, "wilson")


@pytest.mark.parametrize(("roles", "error", "says"), [
    ({"oracle": "x"}, UnknownName, "unknown role 'oracle'"),
    ({"planner": "x"}, ConfigError, "asks a planner"),
])
def test_eval_refuses_a_role_no_scheme_asks(tmp_path: Any, roles: dict[str, str],
                                           error: type[Exception], says: str) -> None:
    from ponder.eval.runner import EvalConfig

    with pytest.raises(error, match=says):
        EvalConfig(task="gsm8k", out=tmp_path / "r.db", schemes=("cot", "beam@2"), roles=roles)


def test_solve_takes_models_by_role_and_reports_their_cost() -> None:
    import json

    from typer.testing import CliRunner

    from ponder.cli import app

    shown = CliRunner().invoke(app, ["solve", "q", "--model", "fake", "--model", "judge=fake",
                                     "--scheme", "best-of-n@2:scorer=judge", "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["roles"] == {"judge": "fake"}
    assert [p["role"] for p in payload["usage"]["by_role"]] == ["policy", "judge"]
    refused = CliRunner().invoke(app, ["solve", "q", "--model", "fake", "--model", "judge=fake"])
    assert isinstance(refused.exception, ConfigError)  # main() prints it as one line, exit 2
    assert "asks models in the roles policy" in str(refused.exception)
