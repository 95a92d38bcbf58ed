"""Python inside a chain (`tools=python`, ponder/schemes/tooluse.py) on the scripted fake, with
the real sandbox: a block the chain closes runs, its real output is inserted as forced text,
and the chain goes on from it."""

from __future__ import annotations

import re

import pytest

from ponder.core.problem import Problem
from ponder.core.types import GenerationRequest, Node, user
from ponder.models.fake import ASSISTANT, ScriptedModel, tokenize
from ponder.schemes import get_scheme

FENCE = "```"


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


PROBLEM = Problem(question="q", messages=user("What is 17 * 24?"), extract=boxed)


def written(prompt: str) -> str:
    return prompt.rsplit(ASSISTANT, 1)[1]


def coder(code: str, *, then: str = "so \\boxed{{{out}}}") -> ScriptedModel:
    """Writes a python block (and the output it imagines: 999), then, once a real output block
    is in the chain, a reply that boxes what the output said."""
    def write(prompt: str, _i: int) -> str:
        so_far = written(prompt)
        if "```output\n" in so_far:
            out = so_far.rsplit("```output\n", 1)[1].split("\n```", 1)[0]
            return then.format(out=out)
        return f"Let me compute.\n```python\n{code}\n```\n```output\n999\n```\nso \\boxed{{999}}"
    return ScriptedModel(write)


def calls(model: ScriptedModel) -> list[GenerationRequest]:
    return [request for call in model.calls for request in call]


def forced_texts(node: Node) -> list[str]:
    return [node.text[a:b] for a, b in node.forced]


def test_a_closed_python_block_runs_and_the_chain_goes_on_from_its_real_output() -> None:
    model = coder("print(17 * 24)")
    result = get_scheme("cot:tools=python")(PROBLEM, model=model)
    [node] = result.trace.nodes
    assert forced_texts(node) == ["```output\n408\n```\n"]  # not the 999 it would have invented
    assert node.text == ("Let me compute.\n```python\nprint(17 * 24)\n```\n"
                         "```output\n408\n```\nso \\boxed{408}")
    assert result.answer == "408"
    first, second = calls(model)
    assert first.params.stop == ("```\n",) and first.keep_kv and second.keep_kv
    assert second.prefix is not None and second.prefix.endswith("```output\n408\n```\n")
    # forced text is not sampled: the completion tokens are those of the two sampled pieces
    sampled = len(tokenize("Let me compute.\n```python\nprint(17 * 24)\n```")) + \
        len(tokenize("so \\boxed{408}"))
    assert result.usage.completion_tokens == node.tokens == sampled


@pytest.mark.parametrize(("code", "shown"), [
    pytest.param("print(1 / 0)", "ZeroDivisionError: division by zero", id="exception"),
    pytest.param("while True:\n    pass", "Error: timeout", id="infinite-loop"),
    pytest.param("import socket\nsocket.create_connection(('1.1.1.1', 80))\nprint('out')",
                 "Error: no network", id="no-network"),
    pytest.param("x = 1", "(no output)", id="nothing-printed"),
    pytest.param("print('a' * 5000)", "[output truncated]", id="long-output"),
])
def test_what_a_failed_or_silent_block_shows_the_chain(code: str, shown: str) -> None:
    model = coder(code, then="done")
    result = get_scheme("cot:tools=python:tool_seconds=1")(PROBLEM, model=model)
    [node] = result.trace.nodes
    [inserted] = forced_texts(node)
    assert inserted.startswith("```output\n") and shown in inserted
    assert len(inserted) < 1100 and node.text.endswith("done")


def test_other_blocks_are_left_as_written_and_the_chain_continues() -> None:
    text = "```text\nnot code\n```\nand then \\boxed{5}"
    model = ScriptedModel(lambda prompt, _i: text[len(written(prompt)):])
    result = get_scheme("cot:tools=python")(PROBLEM, model=model)
    [node] = result.trace.nodes
    assert node.text == text and node.forced == [] and result.answer == "5"
    assert len(calls(model)) == 2  # stopped at the fence, went on without running anything


def test_tool_calls_caps_the_blocks_run_per_chain() -> None:
    def write(prompt: str, _i: int) -> str:
        return "```python\nprint(7)\n```\nmore"
    model = ScriptedModel(write)
    result = get_scheme("cot:tools=python:tool_calls=2:max_tokens=40")(PROBLEM, model=model)
    [node] = result.trace.nodes
    assert forced_texts(node) == ["```output\n7\n```\n"] * 2
    assert [r.params.stop for r in calls(model)] == [("```\n",), ("```\n",), ()]


def test_every_chain_of_a_vote_runs_its_own_block() -> None:
    model = ScriptedModel(lambda prompt, i: (
        f"```python\nprint({i} + 40)\n```\n" if "```output" not in prompt
        else "so \\boxed{" + written(prompt).split("```output\n")[1].split("\n")[0] + "}"))
    result = get_scheme("self-consistency@3:tools=python:seed=1")(PROBLEM, model=model)
    assert [n.answer for n in result.trace.nodes] == ["40", "41", "42"]
    assert all(len(n.forced) == 1 for n in result.trace.nodes)
    assert [len(call) for call in model.calls] == [3, 3]  # two batched rounds of three


def test_the_stream_shows_the_inserted_output() -> None:
    seen: list[str] = []
    model = coder("print(6 * 7)")
    get_scheme("cot:tools=python")(PROBLEM, model=model,
                                   on_text=lambda _r, _s, delta: seen.append(delta))
    assert "```output\n42\n```\n" in seen


@pytest.mark.slow
def test_a_real_block_runs_and_the_real_model_continues_from_it() -> None:
    """The 0.5B default, greedy: asked for a program, it writes one; ponder runs it in the
    sandbox, inserts the real output, and the model writes on from there."""
    from test_llamacpp import THREADS, _gguf

    from ponder.models.llamacpp import LlamaCppModel
    from ponder.tasks import get_task

    lm = LlamaCppModel(_gguf("default"), name="default", n_ctx=2048, n_seq_max=2,
                       n_threads=THREADS)
    try:
        problem = get_task("chat").problem("What is 17 * 24? Compute it with a short Python "
                                           "program, then state the answer.")
        result = get_scheme("cot:tools=python:max_tokens=200")(problem, model=lm)
    finally:
        lm.close()
    [node] = result.trace.nodes
    print(node.text)
    [(a, b)] = node.forced
    assert node.text[a:b] == "```output\n408\n```\n"
    assert node.text[:a].rstrip().endswith("```") and "print" in node.text[:a]
    assert node.tokens == result.usage.completion_tokens and len(node.text) > b  # wrote on
    assert "408" in result.content


# -- calc: each result checked as it is written ------------------------------------------------

def arithmetic(start: str, right: str) -> ScriptedModel:
    """Writes `start` (ending in `=`) and `right`; asked to go on after an `=` (a check
    round), writes `right`; else ends with the value after the chain's last `=`, boxed."""
    def write(prompt: str, _i: int) -> str:
        so_far = written(prompt)
        if not so_far:
            return start + right
        if so_far.endswith("="):
            return right
        return "so \\boxed{" + "".join(re.findall(r"\d+", so_far.split("=")[-1])[:1]) + "}"
    return ScriptedModel(write)


@pytest.mark.parametrize(("right", "chain"), [
    pytest.param(" 340 + 76 \\]\n", "\\[ 17 \\times 20 + 17 \\times 4 = 408 \\]\n",
                 id="wrong-replaced"),
    pytest.param(" 408 \\]\n", "\\[ 17 \\times 20 + 17 \\times 4 = 408 \\]\n", id="right-kept"),
    pytest.param(" 17 \\times 24 \\]\n", "\\[ 17 \\times 20 + 17 \\times 4 = 17 \\times 24 \\]\n",
                 id="equal-expression-kept"),
    pytest.param(" the product\n", "\\[ 17 \\times 20 + 17 \\times 4 = the product\n",
                 id="words-kept"),
])
def test_calc_replaces_a_wrong_right_side_only(right: str, chain: str) -> None:
    start = "\\[ 17 \\times 20 + 17 \\times 4 ="
    model = arithmetic(start, right)
    result = get_scheme("cot:tools=calc")(PROBLEM, model=model)
    [node] = result.trace.nodes
    assert node.text.startswith(chain)
    wrong = right.startswith(" 340")
    assert forced_texts(node) == ([" 408 \\]\n"] if wrong else [])
    if wrong:
        assert node.text == chain + "so \\boxed{408}" and result.answer == "408"
    first, check = calls(model)[:2]
    assert first.params.stop == ("=",) and check.params.stop == ("=", "\n")
    assert check.params.max_tokens == 24
    # the replaced right side was sampled: the run's usage counts it, the chain does not hold it
    assert result.usage.completion_tokens == node.tokens + wrong * len(tokenize(right.rstrip()))


def test_calc_leaves_code_bare_numbers_and_endless_decimals_alone() -> None:
    for text in ("```python\nx = 3 + 4\n```\nso \\boxed{7}", "So 7 = 8 \\boxed{7}",
                 "10 / 3 = 3 and \\boxed{3}"):
        model = ScriptedModel(lambda prompt, _i, text=text: text[len(written(prompt)):])
        result = get_scheme("cot:tools=calc")(PROBLEM, model=model)
        assert result.trace.nodes[0].text == text and result.trace.nodes[0].forced == []


def test_calc_does_not_stop_at_each_equals_sign_of_code() -> None:
    text = "```python\nx = 3 + 4\ny = x * 2\nprint(y)\n```\nSo 7 + 7 = 14, \\boxed{14}"
    model = ScriptedModel(lambda prompt, _i: text[len(written(prompt)):])
    result = get_scheme("cot:tools=calc")(PROBLEM, model=model)
    assert result.trace.nodes[0].text == text and result.answer == "14"
    stops = [r.params.stop for r in calls(model)]
    assert stops[:2] == [("=",), ("```\n",)]  # the block's `=`s: one stop, at its end
    assert len(calls(model)) == 4  # `x =`; the fence; `7 + 7 =`; its check (to the end)


# -- tools in tree schemes: a step that closes a python block gets the block's output ---------

@pytest.mark.parametrize("spec", ["beam@2:expansions=1", "dvts@2:expansions=2",
                                  "mcts@4:expansions=1"])
def test_a_tree_step_that_closes_a_python_block_gets_its_real_output(spec: str) -> None:
    """The step ends at the fence (the 999 the model would invent is cut off), the block runs
    in the sandbox, its output is added to the step as forced text, and the next step is
    written from it."""
    model = coder("print(17 * 24)")
    result = get_scheme(f"{spec}:tools=python:scorer=uniform:max_depth=4")(PROBLEM, model=model)
    assert result.answer == "408"
    first = result.trace.nodes[0]
    assert first.text == ("Let me compute.\n```python\nprint(17 * 24)\n```\n"
                          "```output\n408\n```\n")
    assert forced_texts(first) == ["```output\n408\n```\n"] and first.meta["tool"] == "python"
    # sampled tokens only (the fake counts none for the stop string; the output is forced)
    assert first.tokens == len(tokenize("Let me compute.\n```python\nprint(17 * 24)\n"))
    assert all(r.params.stop == ("\n\n", "```\n") for r in calls(model))


def test_tree_tools_are_capped_per_path_and_calc_is_a_chain_tool() -> None:
    model = coder("print(1)", then="Again.\n```python\nprint(2)\n```\n")  # a block every step
    result = get_scheme("beam@1:expansions=1:tools=python:tool_calls=2:scorer=uniform:"
                        "max_depth=4")(PROBLEM, model=model)
    ran = [n for n in result.trace.nodes if n.meta.get("tool") == "python"]
    assert len(ran) == 2  # the third block on the path is left as written
    with pytest.raises(Exception, match="use python here"):
        get_scheme("beam:tools=calc")
