r"""Distillation by rejection sampling: a teacher thinks, its verified chains train a student.

    ponder distill gsm8k --data ../shared/data/gsm8k_train.jsonl --limit 200 \
        --teacher qwen-1.5b --scheme self-consistency@8 --keep 2 --student qwen-0.5b --out runs/d

1. `collect`: the teacher (any LanguageModel) answers each training question with any scheme.
   Every chain in the result's trace whose extracted answer `task.check`s against the gold
   answer is a candidate — rejection sampling as in STaR (Zelikman et al. 2022, arXiv:2203.14465)
   and RFT (Yuan et al. 2023, arXiv:2308.01825, which also keeps only *distinct* correct paths).
   At most `keep` distinct chains per question are kept, each as one chat example: the task's
   prompt (system + user) and the chain as the assistant's reply, with `forced`: the spans of
   the reply that ponder inserted rather than the teacher sampled (tool output), which the
   student's loss leaves out.
2. `write_dataset` (in `ponder.train.sft`, beside `read_dataset`): the examples as JSONL (or
   Parquet), written atomically, each in a format of `FORMATS`: "plain" (the chain as the
   reply) or "think" (`think_format`: `<think>\nREASONING\n</think>\n\nREPLY`, for a student
   that thinks natively; `sft(..., think=True)` gives it a chat template that opens the
   thinking). The journal holds the chains as sampled, so either format is written from it.
3. `sft` (in `ponder.train.sft`): TRL's SFTTrainer on that chat data, full or LoRA, loss on the
   assistant reply only, the student saved atomically.

This module holds the collection (teacher, filter, keep-k, dedupe) and the kill-safe journal
that makes it resumable; the `ponder distill` command (ponder/train/commands.py) runs them.

Choices where the papers leave room:
  * A "chain" is a whole-chain scheme's node (self-consistency, best-of-n, refine's execution,
    aggregate's merge), or for step-tree schemes (beam, dvts, mcts, tot) the path of step texts
    from the root to a node that holds an answer.
  * Chains cut off by the token limit (finish_reason "length") are dropped even when their answer
    checks: the student would learn never to stop.
  * Duplicates are found on whitespace-normalised text. Among the distinct verified chains the
    `prefer` rule picks: "shortest" (default; ties by sample order) or "first" (sample order, an
    unbiased draw). Shortest because a small student on a short training context would otherwise
    see long chains truncated before their answer, and because verbose teacher chains cost
    inference tokens forever after.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.files import write_text_atomic
from ponder.core.protocols import LanguageModel
from ponder.core.types import Result, Span, Trace

if TYPE_CHECKING:
    from ponder.schemes import Scheme
    from ponder.tasks import Record, Task

# --- 1. collect: the teacher answers, the checker filters ----------------------------------------

@dataclass(frozen=True)
class Chain:
    """One complete line of reasoning in a trace; `order` is its place in sampling order;
    `forced` the spans of `text` that ponder inserted (tool output, a forced end of thinking),
    which a student's loss leaves out."""

    text: str
    answer: str | None
    finish_reason: str | None
    order: int
    forced: tuple[Span, ...] = ()

    @property
    def normalised(self) -> str:
        return " ".join(self.text.split())


def chains(trace: Trace) -> list[Chain]:
    """Every node that holds an answer, as the chain that reached it (see the module docstring)."""
    out = []
    for node in trace.nodes:
        if node.answer is None:
            continue
        # a step of a tree: the chain is its path from the root
        path = [trace.nodes[i] for i in trace.path(node.id)] if node.is_step else [node]
        text, forced = "", []
        for step in path:
            forced += [(a + len(text), b + len(text)) for a, b in step.forced]
            text += step.text
        stripped, spans = strip_spans(text, forced)
        out.append(Chain(stripped, node.answer, node.finish_reason, node.id, spans))
    return out


def strip_spans(text: str, spans: Sequence[Span]) -> tuple[str, tuple[Span, ...]]:
    """`text.strip()`, with spans of it moved to match (and cut to what is left)."""
    lead, end = len(text) - len(text.lstrip()), len(text.rstrip())
    moved = ((max(a, lead) - lead, min(b, end) - lead) for a, b in spans)
    return text.strip(), tuple((a, b) for a, b in moved if a < b)


def _shortest(candidates: list[Chain]) -> list[Chain]:
    return sorted(candidates, key=lambda c: (len(c.normalised), c.order))


def _first(candidates: list[Chain]) -> list[Chain]:
    return sorted(candidates, key=lambda c: c.order)


PREFER: dict[str, Callable[[list[Chain]], list[Chain]]] = {"shortest": _shortest, "first": _first}


@dataclass
class CollectStats:
    """Counts over the questions collected: `chains` seen in traces, `verified` (answer checks),
    `truncated` (verified but cut off, dropped), `duplicates` (dropped), `kept`, and `solved`:
    the questions with at least one chain kept."""

    problems: int = 0
    chains: int = 0
    verified: int = 0
    truncated: int = 0
    duplicates: int = 0
    kept: int = 0
    solved: int = 0

    def __iadd__(self, other: CollectStats) -> CollectStats:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.problems} questions, {self.chains} chains, {self.verified} verified "
                f"({self.truncated} cut off, {self.duplicates} duplicates dropped), "
                f"{self.kept} kept from {self.solved} questions")


def select(chains_: Sequence[Chain], gold: str, task: Task, *, keep: int,
           prefer: str = "shortest") -> tuple[list[Chain], CollectStats]:
    """The rejection-sampling filter: verified, complete, distinct, at most `keep`."""
    verified = [c for c in chains_ if c.answer is not None and c.text
                and task.check(c.answer, gold)]
    complete = [c for c in verified if c.finish_reason != "length"]
    distinct: dict[str, Chain] = {}
    for c in complete:
        distinct.setdefault(c.normalised, c)  # the first sampled of equal texts stays
    kept = PREFER[prefer](list(distinct.values()))[:keep]
    stats = CollectStats(problems=1, chains=len(chains_), verified=len(verified),
                         truncated=len(verified) - len(complete),
                         duplicates=len(complete) - len(distinct), kept=len(kept),
                         solved=int(bool(kept)))
    return kept, stats


def collect_one(task: Task, record: Record, teacher: LanguageModel, scheme: Scheme, *,
                keep: int, prefer: str = "shortest", spec: str | None = None
                ) -> tuple[list[dict[str, Any]], CollectStats]:
    """One question: the teacher's scheme run, filtered, as chat examples."""
    problem = task.problem(_checked(task, record))
    result: Result = scheme(problem, model=teacher)
    return examples_of(task, record, result.trace, keep=keep, prefer=prefer,
                       teacher=teacher.name, spec=spec or scheme.name)


def examples_of(task: Task, record: Record, trace: Trace, *, keep: int, prefer: str,
                teacher: str, spec: str) -> tuple[list[dict[str, Any]], CollectStats]:
    """The verified chains of one teacher trace (run now, or stored by `ponder eval`), as chat
    examples on the task's prompt."""
    gold = _checked(task, record).gold or ""
    kept, stats = select(chains(trace), gold, task, keep=keep, prefer=prefer)
    prompt = [dict(m) for m in task.problem(record).messages]
    examples = [{"messages": [*prompt, {"role": "assistant", "content": c.text}],
                 "id": record.id, "answer": c.answer, "gold": gold,
                 "teacher": teacher, "scheme": spec,
                 "forced": [list(span) for span in c.forced]} for c in kept]
    return examples, stats


def _checked(task: Task, record: Record) -> Record:
    if record.gold is None:
        raise DataError(f"question {record.id!r} of {task.name!r} has no gold answer; "
                        "distillation needs gold answers to check the teacher against")
    return record


def collect(task: Task, records: Iterable[Record], teacher: LanguageModel, scheme_spec: str, *,
            keep: int = 2, prefer: str = "shortest", seed: int | None = 0,
            max_tokens: int | None = None,
            on_problem: Callable[[Record, list[dict[str, Any]], CollectStats], None] | None = None,
            ) -> tuple[list[dict[str, Any]], CollectStats]:
    """The teacher answers every record with `scheme_spec`; returns the kept examples (each
    `{"messages", "id", "answer", "gold", "teacher", "scheme"}`) and the summed counts.
    `on_problem(record, examples, stats)` is called after each question (progress, journals)."""
    scheme = make_scheme(scheme_spec, keep=keep, prefer=prefer, seed=seed, max_tokens=max_tokens)
    examples: list[dict[str, Any]] = []
    total = CollectStats()
    for record in records:
        kept, stats = collect_one(task, record, teacher, scheme, keep=keep, prefer=prefer,
                                  spec=scheme_spec)
        examples += kept
        total += stats
        if on_problem is not None:
            on_problem(record, kept, stats)
    return examples, total


def make_scheme(spec: str, *, keep: int, prefer: str, seed: int | None,
                max_tokens: int | None) -> Scheme:
    """The teacher's scheme, after checking the filter's own settings."""
    from ponder.schemes import get_scheme

    if keep < 1:
        raise ConfigError("keep", keep, "keep at least 1 chain per question")
    if prefer not in PREFER:
        raise UnknownName("prefer rule", prefer, PREFER)
    return get_scheme(spec, seed=seed, max_tokens=max_tokens)


# --- the thinking format: a kept chain as a native thinker's reply ------------------------------

THINK_OPEN, THINK_CLOSE = "<think>\n", "\n</think>\n\n"


def think_format(example: Mapping[str, Any]) -> dict[str, Any]:
    """A distilled example with its reply written as a native thinker's (DeepSeek-R1's):
    `<think>\nREASONING\n</think>\n\nREPLY`, its `forced` spans moved to match. The split
    is the chat task's (ponder/tasks/chat.py `reply`): a chain that thinks natively keeps its
    own; else the last paragraph is the reply where it states the answer, the paragraphs
    before it the reasoning; else the whole chain is the reasoning and the reply states the
    boxed answer in a sentence. The reply keeps its `\\boxed{}`: answers are read from it."""
    *prompt, reply = example["messages"]
    text = reply["content"]
    reasoning, stated = _think_split(text)
    sentence = f"The answer is \\boxed{{{example.get('answer') or ''}}}."
    pieces: list[Span | str] = [THINK_OPEN, reasoning, THINK_CLOSE,
                                sentence if stated is None else stated]
    out, spans = "", []
    for piece in pieces:
        if isinstance(piece, tuple):  # a slice of the chain: its forced spans come along
            a, b = piece
            spans += [(len(out) + max(s, a) - a, len(out) + min(e, b) - a)
                      for s, e in example.get("forced") or [] if max(s, a) < min(e, b)]
            piece = text[a:b]
        out += piece
    return {**example, "messages": [*prompt, {**reply, "content": out}],
            "forced": [list(span) for span in spans]}


def _think_split(text: str) -> tuple[Span, Span | None]:
    """The slices of `text` that are reasoning and reply (None: no reply states the answer)."""
    from ponder.core.reasoning import END, START
    from ponder.tasks.chat import reply as chat_reply
    from ponder.verifiers import extract_answer

    def trimmed(a: int, b: int) -> Span:
        lead = len(text[a:b]) - len(text[a:b].lstrip())
        return a + lead, a + lead + len(text[a:b].strip())

    def stated(span: Span) -> Span | None:
        return span if extract_answer(text[span[0]:span[1]]) is not None else None

    start = text.find(START)
    if start >= 0 and not text[:start].strip() and (end := text.find(END, start)) >= 0:
        return trimmed(start + len(START), end), stated(trimmed(end + len(END), len(text)))
    if chat_reply(text).reasoning:  # a paragraph states the answer after the reasoning
        cut = text.rstrip().rfind("\n\n")
        last = stated(trimmed(cut + 2, len(text)))
        if last is not None:
            return trimmed(0, cut), last
    return trimmed(0, len(text)), None


FORMATS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "plain": dict, "think": think_format}


# --- resumable collection: a journal of finished questions ---------------------------------------

class Journal:
    """`collect.jsonl` in the output folder: a header line naming what is collected, then one
    line per finished question (`{"id", "stats", "examples"}`), appended and fsynced as each
    question finishes. A kill loses at most the question in flight; a torn last line is cut off
    when the journal is next opened. `dataset.jsonl` is rebuilt from it, atomically."""

    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        self.path = path
        self.header = dict(header)
        self.done: dict[str, tuple[list[dict[str, Any]], CollectStats]] = {}
        raw = path.read_bytes() if path.exists() else b""
        whole = raw[: raw.rfind(b"\n") + 1]  # bytes after the last newline: a torn line
        lines = whole.decode("utf-8").splitlines()
        if not lines:
            write_text_atomic(path, json.dumps(self.header) + "\n")
            return
        if len(whole) < len(raw):
            with path.open("r+b") as fh:
                fh.truncate(len(whole))
        self._check_header(lines[0])
        for number, line in enumerate(lines[1:], 2):
            try:
                entry = json.loads(line)
                self.done[entry["id"]] = (entry["examples"], CollectStats(**entry["stats"]))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{number} is not a journal line ({e}); delete the file "
                                "to collect again") from None

    def _check_header(self, line: str) -> None:
        try:
            found = json.loads(line)
        except json.JSONDecodeError:
            found = None
        if found != self.header:
            diff = sorted(k for k in self.header if not isinstance(found, dict)
                          or found.get(k) != self.header[k])
            raise ConfigError("out", str(self.path.parent),
                              f"it holds a collection with other settings ({', '.join(diff)}); "
                              "use the same settings to resume, or another --out")

    def add(self, record_id: str, examples: list[dict[str, Any]], stats: CollectStats) -> None:
        line = json.dumps({"id": record_id, "stats": stats.to_dict(), "examples": examples},
                          ensure_ascii=False) + "\n"
        with self.path.open("ab") as fh:
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.done[record_id] = (examples, stats)
