"""A suite of user prompts through `ponder serve` and the official `openai` client, as a user
would send them: is the deliverable in `content`, is it apart from the reasoning, is every
token counted once, does the code run and pass, is the math right. Writes
docs/results/prompt_suite.md, and every reply with its checks to prompt_suite.jsonl.

    .venv/bin/python benchmarks/prompt_suite.py [--model default] [--efforts low,medium]

The prompts (benchmarks/prompts/suite.jsonl, 40): math word problems with their answers, code
with small asserts, explanations, translations, multi-turn follow-ups, and instructions with
a format constraint. The server runs with its defaults (the chat task). Model-written code is
run only inside ponder's sandbox (ponder/tools/sandbox.py), with the prompt's asserts after it.

Structural checks (the target is all of them on every prompt):
  reply      content is not empty
  apart      content is not the reasoning (the reported bug: both were the same text)
  once       completion_tokens = reasoning_tokens + the content's tokens, the content counted
             again here with the model's tokenizer (within a token)
  delivered  the deliverable is in content: a ```python block for code, a number (or yes/no)
             for a math question, a reply of words for the rest
Correctness (reported as it is): the math answer is right; the code parses and its asserts
pass; a translation holds the expected word; a format instruction is kept.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ponder.eval.store import cpu_model
from ponder.serve.process import serving

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "prompts" / "suite.jsonl"
OUT = ROOT / "docs" / "results" / "prompt_suite.md"
_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class Checked:
    id: str
    kind: str
    effort: str
    structural: dict[str, bool]
    correct: bool | None  # None: nothing to check (an explanation)
    seconds: float
    completion_tokens: int
    reasoning_tokens: int
    note: str = ""
    content: str = field(default="", repr=False)
    reasoning: str = field(default="", repr=False)


def messages_of(item: dict[str, Any]) -> list[dict[str, str]]:
    if "turns" in item:
        return [{"role": role, "content": text} for role, text in item["turns"]]
    return [{"role": "user", "content": item["prompt"]}]


def code_passes(content: str, asserts: str) -> tuple[bool, str]:
    """The last python block of the reply, then the asserts, in the sandbox."""
    from ponder.tools.sandbox import run_python

    blocks = _FENCE.findall(content)
    if not blocks:
        return False, "no code block"
    code = blocks[-1]
    try:
        ast.parse(code)
    except SyntaxError as e:
        return False, f"does not parse: {e.msg}"
    done = run_python(code + "\n\n" + asserts + "\nprint('PASSED')\n", timeout=10)
    ok = done.error is None and "PASSED" in done.stdout
    return ok, "" if ok else (done.error or done.stderr.strip().splitlines()[-1:] or ["?"])[0][:80]


def check(item: dict[str, Any], content: str, reasoning: str) -> tuple[bool, bool | None, str]:
    """(deliverable in content, correct, note). The deliverable: a code block for code, a
    number (or yes/no) for a math question, and for the rest a reply of words (whether they
    are the right words is correctness)."""
    kind, text = item["kind"], content.lower()
    delivered = len(re.findall(r"\w+", content)) >= 1
    if "asserts" in item:
        delivered = bool(_FENCE.search(content))
        ok, note = code_passes(content, item["asserts"])
        return delivered, ok, note
    if "answer" in item:
        gold = item["answer"].lower()
        if gold in ("yes", "no"):
            words = re.findall(r"\b(yes|no)\b", text)
            return bool(words), bool(words) and words[-1] == gold, ""
        numbers = [n.rstrip(".0") if "." in n else n for n in _NUMBER.findall(text)]
        return bool(numbers), gold in numbers, "" if gold in numbers else f"got {numbers[-3:]}"
    if "expect" in item:
        hit = any(word in text.replace("’", "'") for word in item["expect"])
        return delivered, hit, "" if hit else content[:60]
    if kind == "format":
        rule = item["check"]
        if rule == "lines3":
            lines = [ln for ln in content.strip().splitlines() if ln.strip()]
            return delivered, len(lines) == 3, f"{len(lines)} lines"
        if rule == "json":
            found = re.search(r"\{.*\}", content, re.DOTALL)
            try:
                value = json.loads(found.group(0)) if found else None
            except json.JSONDecodeError:
                value = None
            ok = isinstance(value, dict) and value.get("name") == "Ann" and value.get("age") == 30
            return delivered, ok, ""
        if rule == "paris":
            return delivered, content.strip().strip(".").lower() == "paris", content[:60]
        if rule == "cold":
            return delivered, content.strip().strip(".") == "COLD", content[:60]
    return delivered, None, ""


def run(url: str, model: str, items: list[dict[str, Any]], effort: str,
        count: Any) -> list[Checked]:
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=600, max_retries=0)
    out = []
    for item in items:
        start = time.monotonic()
        reply = client.chat.completions.create(model=model, messages=messages_of(item),
                                               reasoning_effort=effort)  # type: ignore[arg-type]
        seconds = time.monotonic() - start
        message = reply.choices[0].message
        content = message.content or ""
        reasoning = (message.model_extra or {}).get("reasoning_content") or ""
        usage = reply.usage
        assert usage is not None and usage.completion_tokens_details is not None
        thought = usage.completion_tokens_details.reasoning_tokens or 0
        delivered, correct, note = check(item, content, reasoning)
        structural = {
            "reply": bool(content.strip()),
            "apart": content.strip() != reasoning.strip(),
            # the content counted again here, from the text as shown: a token either way is
            # the tokenizer's, not a token counted twice or not at all
            "once": abs(usage.completion_tokens - thought - count(content)) <= 1,
            "delivered": delivered,
        }
        out.append(Checked(item["id"], item["kind"], effort, structural, correct, seconds,
                           usage.completion_tokens, thought, note, content, reasoning))
        print(f"{effort:6} {item['id']:13} {seconds:5.1f}s "
              f"{'ok' if all(structural.values()) else 'STRUCT ' + str(structural)} "
              f"correct={correct} {note}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--efforts", default="low,medium")
    args = parser.parse_args()
    items = [json.loads(line) for line in SUITE.read_text().splitlines() if line.strip()]

    from ponder.models.catalog import load_model

    counter = load_model(args.model, n_ctx=512)  # the server's tokenizer, to count content
    started = time.monotonic()
    results: list[Checked] = []
    with serving("--model", args.model) as url:
        for effort in args.efforts.split(","):
            results += run(url, args.model, items, effort, counter.count_tokens)
    counter.close()
    write(results, args, time.monotonic() - started, len(items))


def write(results: list[Checked], args: argparse.Namespace, seconds: float, n: int) -> None:
    efforts = args.efforts.split(",")
    kinds = sorted({r.kind for r in results})
    lines = [
        "# Prompt suite: a reply after the reasoning",
        "",
        f"`.venv/bin/python benchmarks/prompt_suite.py --model {args.model} --efforts "
        f"{args.efforts}`: {n} prompts (benchmarks/prompts/suite.jsonl) through `ponder serve "
        f"--model {args.model}` (the chat task) with the official `openai` client; "
        f"{cpu_model()}, {os.cpu_count()} cores; {seconds / 60:.0f} min in all.",
        "",
        "## Structural checks (target: all)",
        "",
        "| effort | reply | apart | once | delivered | all four |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for effort in efforts:
        rows = [r for r in results if r.effort == effort]
        cells = [f"{sum(r.structural[k] for r in rows)}/{len(rows)}"
                 for k in ("reply", "apart", "once", "delivered")]
        whole = sum(all(r.structural.values()) for r in rows)
        lines.append(f"| {effort} | {' | '.join(cells)} | {whole}/{len(rows)} |")
    lines += ["", "## Correctness (as it is)", "",
              "| effort | " + " | ".join(kinds) + " | s/prompt | tokens/prompt |",
              "|---|" + "---:|" * (len(kinds) + 2)]
    for effort in efforts:
        rows = [r for r in results if r.effort == effort]
        cells = []
        for kind in kinds:
            judged = [r for r in rows if r.kind == kind and r.correct is not None]
            cells.append(f"{sum(bool(r.correct) for r in judged)}/{len(judged)}" if judged
                         else "—")
        mean_s = sum(r.seconds for r in rows) / len(rows)
        mean_t = sum(r.completion_tokens for r in rows) / len(rows)
        lines.append(f"| {effort} | {' | '.join(cells)} | {mean_s:.1f} | {mean_t:.0f} |")
    failed = [f"{r.effort} {r.id} ({', '.join(k for k, v in r.structural.items() if not v)})"
              for r in results if not all(r.structural.values())]
    lines += ["", "Explanations are not graded (correct: —). Structural failures: "
              + (", ".join(failed) or "none") + ".", "",
              "## Every prompt", "", "| effort | prompt | structural | correct | note |",
              "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.effort} | {r.id} | {'ok' if all(r.structural.values()) else 'FAIL'}"
                     f" | {r.correct} | {r.note} |")
    OUT.write_text("\n".join(lines) + "\n")
    OUT.with_suffix(".jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in results))
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
