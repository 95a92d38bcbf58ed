"""Tools inside a chain: `tools=python`, `tools=calc`, or both (`tools=python+calc`).

python: a chain that closes a ```python block is paused, the block runs in the sandbox
(ponder/tools/sandbox.py), and the chain goes on from its real output, inserted as forced text
in the form the Coder models write (and otherwise invent):

    ```python
    print(17 * 24)
    ```
    ```output          <- forced: ponder ran the block
    408
    ```                <- forced

calc: a calculator that checks each result as the chain writes it. A chain that writes `=`
after arithmetic (`17 \\times 20 + 17 \\times 4 =`) is paused there; the next, short round
(at most CHECK_TOKENS, to the end of the line or the next `=`) is its right side. Where the
right side states another value (`340 + 76`), it is dropped and the exact value (` 408`) is
inserted as forced text instead; where it states the value (`408`, `17 \\times (20 + 4)`) or no
arithmetic (`the product`), it stands. Left and right sides are read as the `calc` scorer reads
a claim (verifiers/claims.py: eval-free, exact); nothing is checked after a bare number, a
variable, units, `%`, a value with no short decimal form (10 / 3), or inside code. GSM8K's own
calculator (Cobbe et al. 2021, arXiv:2110.14168, §2.1) fills in results marked `<<48/2=24>>`
in the fine-tuning data; an untuned model writes plain `=`, and inserting the value right after
it cut into chains that expand before they compute (`17 \\times 24 = 17 \\times (20 + 4)`), so
calc lets the model write its right side and replaces only a wrong one. Replaced right sides
are sampled tokens (the run's usage counts them) that the chain no longer holds.

All chains move in rounds, as in forcing.py: every chain still writing is sampled in one
batched call, each stopping at the end of a code fence (the stop string "```\\n") or at `=`;
the blocks of the chains that stopped at a fence run in the sandbox at once (one process each,
in threads), the right sides of those that stopped at `=` are judged, what each tool gives is
inserted, and the next round continues them. Each request keeps its KV
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
from fractions import Fraction

from ponder.core.problem import Problem
from ponder.core.types import Completion, GenerationRequest, splice
from ponder.schemes.base import ChainConfig, Run
from ponder.tools.sandbox import Execution, run_python
from ponder.verifiers.claims import pending_value, right_agrees

FENCE = "```\n"  # python's stop string: the end of a code fence (an opening one has a language)
EQUALS = "="  # calc's stop string
MAX_DECIMALS = 6  # calc checks a value only where it has a decimal form this short
CHECK_TOKENS = 24  # the most tokens of a right side that calc reads before judging it
_AFTER_ARITHMETIC = re.compile(r"(?<=[\d)])[^\d)]*\Z")  # what follows a right side's last number
OUTPUT_CHARS = 1000  # the most characters of a program's output inserted into a chain
# The last fence opened in a chain, if it is a Python block still open at its end.
_OPEN_BLOCK = re.compile(r"```(?:python|py|python3)[ \t]*\n((?:(?!```).)*)\Z", re.S)


@dataclass
class Writing:
    """One chain so far (after the prompt), the blocks it ran and the values calc checked."""

    chain: Completion
    runs: list[Execution] = field(default_factory=list)
    done: bool = False
    paused: str | None = None  # the stop string it paused at, once put back
    checking: Fraction | None = None  # calc: the value the text after its `=` must state
    corrected: int = 0  # right sides calc replaced
    sampled: int = 0  # tokens sampled for it, replaced right sides included


def sample(problem: Problem, r: Run, config: ChainConfig, n: int, first_sample: int = 0,
           logprobs: int | None = None) -> list[Completion]:
    """n chains written in batched rounds, their tools used between rounds."""
    prompt = r.model.render_chat(problem.messages)
    chains = [Writing(Completion("")) for _ in range(n)]
    rounds = 0
    while not r.cancelled:
        asked = [(i, w) for i, w in enumerate(chains) if not w.done]
        share = r.budget_left // max(len(asked), 1)
        requests, writing = [], []
        for i, w in asked:
            room = min(config.max_tokens - w.sampled, share)
            if room <= 0:  # its tokens are spent: the chain ends as it stands
                w.done = True
                continue
            seed = config.seed_for(rounds)
            stop = stops(w, config)
            if w.checking is not None:  # a short round: the right side of the `=`
                room, stop = min(room, CHECK_TOKENS), (*stop, "\n")
            params = config.sampling(1, max_tokens=room, stop=stop, seed=seed,
                                     first_sample=first_sample + i, logprobs=logprobs)
            requests.append(GenerationRequest(params=params, prefix=prompt + w.chain.text,
                                              keep_kv=True))
            writing.append(w)
        if not requests:
            break
        rounds += 1
        out = r.generate(requests)
        inserts = {id(w): text for w, [c] in zip(writing, out, strict=True)
                   if (text := wrote(w, c, r)) is not None}
        blocks = [w for w in writing if w.paused == FENCE and "python" in config.tool_names
                  and len(w.runs) < config.tool_calls and at_block(w.chain.text)]
        inserts |= dict(zip(map(id, blocks), run_blocks(blocks, config), strict=True))
        for w in writing:
            if (text := inserts.get(id(w))) is not None:
                w.chain = splice(w.chain, text, Completion(""))
                if r.on_text is not None and len(chains) == 1:  # a streamed chain shows it
                    r.on_text(0, 0, text)
    return [w.chain for w in chains]


def stops(w: Writing, config: ChainConfig) -> tuple[str, ...]:
    """Where the chain's next round pauses for a tool. Inside a code block calc waits for
    the block's end rather than stopping at each `=` of the code (assignments claim nothing)."""
    tools = config.tool_names
    in_code = w.chain.text.count("```") % 2 == 1
    python = "python" in tools and len(w.runs) < config.tool_calls
    calc = "calc" in tools
    return (FENCE,) * (python or (calc and in_code)) + (EQUALS,) * (calc and not in_code)


def wrote(w: Writing, c: Completion, r: Run) -> str | None:
    """Take a round's text into the chain. It paused at a tool's stop string (put back: it
    was sampled, then cut off), or it ended. After an `=` whose value calc knows, the text is
    the right side: kept where it states the value (or states no arithmetic), else replaced
    by the value, which is returned to be inserted."""
    w.sampled += c.completion_tokens
    checking, w.checking = w.checking, None
    stop = c.stop_string if c.finish_reason == "stop" and not r.cancelled else None
    if checking is not None and right_agrees(checking, c.text + (stop or "")) is False:
        w.corrected += 1
        w.paused = None
        return corrected(checking, c.text, stop)
    w.chain = splice(w.chain, "", c)
    w.chain.stop_string = None
    w.paused = stop
    if stop is None:  # the chain ended, unless only a check round's few tokens ran out
        w.done = checking is None or c.finish_reason != "length"
        return None
    w.chain.text += stop
    if stop == EQUALS:
        w.checking = pending_value(w.chain.text[: -len(EQUALS)])
        if w.checking is not None and number(w.checking) is None:
            w.checking = None  # no short decimal form to state: not checked
    return None


def at_block(text: str) -> bool:
    """Whether a chain that ends with a fence just closed a python block."""
    return _OPEN_BLOCK.search(text[: -len(FENCE)]) is not None


def corrected(value: Fraction, right: str, stop: str | None) -> str:
    """What replaces a wrong right side: the value, the words or delimiters the model wrote
    after its arithmetic (` \\]`, ` dollars.`), and the end of the line. The line ends there
    even where the model went on to another `=`: left to go on after a replaced value, the
    0.5B finishes the expression it had in mind (`= 408 + 76 = 484`)."""
    after = _AFTER_ARITHMETIC.search(right)
    tail = after.group(0) if after is not None else ""
    return f" {number(value)}{tail}" + ("\n" if stop is not None else "")


def number(value: Fraction) -> str | None:
    """A value as a chain would write it (408, 49.5, -3), or None where no short decimal
    form is exact (10 / 3)."""
    for decimals in range(MAX_DECIMALS + 1):
        scaled = value * 10**decimals
        if scaled.denominator == 1:
            whole = f"{abs(scaled.numerator):0{decimals + 1}d}"
            digits = whole if not decimals else f"{whole[:-decimals]}.{whole[-decimals:]}"
            return ("-" if value < 0 else "") + digits
    return None


def run_blocks(chains: Sequence[Writing], config: ChainConfig) -> list[str]:
    """Run each chain's last block, all at once; the text to insert after each."""
    runs = run_codes([block(w.chain.text) for w in chains], config.tool_seconds)
    for w, ex in zip(chains, runs, strict=True):
        w.runs.append(ex)
    return [output_block(ex) for ex in runs]


def run_codes(codes: Sequence[str], seconds: float) -> list[Execution]:
    """Each program in the sandbox, all at once (one process each, in threads)."""
    with ThreadPoolExecutor(max(len(codes), 1)) as pool:
        return list(pool.map(lambda code: run_python(code, timeout=seconds), codes))


def output_block(ex: Execution) -> str:
    """A run as the output block inserted after its code, in the Coder models' own form."""
    return f"```output\n{shown(ex)}\n```\n"


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
