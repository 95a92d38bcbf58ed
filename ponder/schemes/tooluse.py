"""Python inside a chain (`tools=python`): a chain that closes a ```python block is paused, the
block runs in the sandbox (ponder/tools/sandbox.py), and the chain goes on from its real output,
inserted as forced text in the form the Coder models write (and otherwise invent):

    ```python
    print(17 * 24)
    ```
    ```output          <- forced: ponder ran the block
    408
    ```                <- forced

All chains move in rounds, as in forcing.py: every chain still writing is sampled in one
batched call, each stopping at the end of a code fence (the stop string "```\\n"); the blocks of
the chains that stopped there run in the sandbox at once (one process each, in threads), their
outputs are inserted, and the next round continues them. Each request keeps its KV
(`keep_kv`), so on llama.cpp the continuation prefills only the inserted output. A fence that
closes another language's block, or a block the chain cannot run any more (`tool_calls` used),
is left as written and the chain continues.

What is inserted: the program's stdout, cut to OUTPUT_CHARS; for a program that failed, the
last line of its traceback (`ZeroDivisionError: division by zero`) or the sandbox's limit
(`Error: timeout`); "(no output)" for a program that printed nothing. An output block the chain
writes itself after a block that ran is left as written: the real one came first.

Tokens: the sampled tokens of every round are the chain's completion tokens; inserted output is
forced (Completion.forced spans), not counted as completion tokens, and is part of the prompt
of the next round (prompt tokens, mostly cached). `max_tokens` bounds a chain's sampled tokens
over all its rounds.

Departures from the sketch in issue 25: chains wait for the round's slowest chain rather than
decoding on while another's block runs (a block takes ~60 ms in the sandbox; a round of four
chains decodes for seconds), and only the last block before the fence runs: a block is a
script on its own, with no state carried from the chain's earlier blocks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ponder.core.problem import Problem
from ponder.core.types import Completion, GenerationRequest, splice
from ponder.schemes.base import ChainConfig, Run
from ponder.tools.sandbox import Execution, run_python

FENCE = "```\n"  # the stop string: the end of a code fence (an opening one has a language)
OUTPUT_CHARS = 1000  # the most characters of a program's output inserted into a chain
# The last fence opened in a chain, if it is a Python block still open at its end.
_OPEN_BLOCK = re.compile(r"```(?:python|py|python3)[ \t]*\n((?:(?!```).)*)\Z", re.S)


@dataclass
class Writing:
    """One chain so far (after the prompt) and the blocks it ran."""

    chain: Completion
    runs: list[Execution] = field(default_factory=list)
    done: bool = False


def sample(problem: Problem, r: Run, config: ChainConfig, n: int, first_sample: int = 0,
           logprobs: int | None = None) -> list[Completion]:
    """n chains whose python blocks ran, written in batched rounds."""
    prompt = r.model.render_chat(problem.messages)
    chains = [Writing(Completion("")) for _ in range(n)]
    rounds = 0
    while not r.cancelled:
        asked = [(i, w) for i, w in enumerate(chains) if not w.done]
        if not asked:
            break
        share = r.budget_left // len(asked)
        requests, writing = [], []
        for i, w in asked:
            room = min(config.max_tokens - w.chain.completion_tokens, share)
            if room <= 0:  # its tokens are spent: the chain ends as it stands
                w.done = True
                continue
            seed = None if config.seed is None else config.seed + 7919 * rounds
            stop = (FENCE,) if len(w.runs) < config.tool_calls else ()
            params = config.sampling(1, max_tokens=room, stop=stop, seed=seed,
                                     first_sample=first_sample + i, logprobs=logprobs)
            requests.append(GenerationRequest(params=params, prefix=prompt + w.chain.text,
                                              keep_kv=True))
            writing.append(w)
        if not requests:
            break
        rounds += 1
        out = r.generate(requests)
        paused = [w for w, [c] in zip(writing, out, strict=True) if wrote(w, c, r)]
        for w, text in zip(paused, run_blocks(paused, config), strict=True):
            w.chain = splice(w.chain, text, Completion(""))
            if r.on_text is not None and len(chains) == 1:  # a streamed chain shows what ran
                r.on_text(0, 0, text)
    return [w.chain for w in chains]


def wrote(w: Writing, c: Completion, r: Run) -> bool:
    """Add a round's text to the chain; True where it paused at a python block to run."""
    w.chain = splice(w.chain, "", c)
    if c.stop_string != FENCE or c.finish_reason != "stop" or r.cancelled:
        w.done = True
        return False
    w.chain.text += FENCE  # sampled, then cut off as the stop string: put back
    w.chain.stop_string = None
    return _OPEN_BLOCK.search(w.chain.text[: -len(FENCE)]) is not None


def run_blocks(chains: Sequence[Writing], config: ChainConfig) -> list[str]:
    """Run each chain's last block, all at once; the text to insert after each."""
    codes = [block(w.chain.text) for w in chains]
    with ThreadPoolExecutor(max(len(codes), 1)) as pool:
        runs = list(pool.map(lambda code: run_python(code, timeout=config.tool_seconds), codes))
    for w, ex in zip(chains, runs, strict=True):
        w.runs.append(ex)
    return [f"```output\n{shown(ex)}\n```\n" for ex in runs]


def block(text: str) -> str:
    """The code of the python block a chain just closed (its text ends with the fence)."""
    found = _OPEN_BLOCK.search(text[: -len(FENCE)])
    assert found is not None, "run only a chain paused at a python block"
    return found.group(1)


def shown(ex: Execution) -> str:
    """What a chain is shown of a run: its output, or why it failed, in a few lines."""
    out = ex.stdout.rstrip("\n")
    if ex.error is not None:
        why = f"Error: {ex.error}"
    elif ex.exit_code != 0:
        lines = [ln for ln in ex.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"Error: exit code {ex.exit_code}"
    else:
        why = ""
    text = "\n".join(part for part in (out, why) if part) or "(no output)"
    return text if len(text) <= OUTPUT_CHARS else text[:OUTPUT_CHARS] + "\n[output truncated]"
