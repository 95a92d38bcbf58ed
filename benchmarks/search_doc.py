"""Writes issue 4's accuracy pages from the search runs' databases, finished or not.

    .venv/bin/python benchmarks/search_doc.py            # both pages
    .venv/bin/python benchmarks/search_doc.py gsm8k      # docs/results/search_gsm8k100.md only
    .venv/bin/python benchmarks/search_doc.py --runs /tmp/smoke --out /tmp/pages   # elsewhere

For each run (benchmarks/search_gsm8k100.sh, benchmarks/search_game24.sh) the page holds: its
status (questions each scheme has, of those asked), the command, the report against cot, the
report against self-consistency at about search's cost (the paired difference on the same
questions: the comparison the issue asks for), and one computed sentence per search scheme
saying whether it beat that baseline. The Game of 24 page also counts what is wrong with the
steps the policy writes (`step_faults`): a search guided by the rule can only keep right steps;
the GSM8K page, how well the policy's step judge tells right from wrong (`judge_table`).
A run not finished is marked IN PROGRESS and gets no plot; a finished one gets the plot
(`--plot`) beside its page. Reads only: safe beside the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ponder.core.files import write_text_atomic
from ponder.core.types import Trace
from ponder.eval.report import SchemeSummary, plot, read_rows, summarize, title, to_markdown
from ponder.eval.store import Store
from ponder.tasks import TASKS, game24
from ponder.tasks.base import Task

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ("beam", "dvts", "mcts", "tot")


@dataclass(frozen=True)
class Page:
    name: str
    heading: str
    files: tuple[str, ...]  # results databases, in the runs folder
    questions: int  # how many the run asks
    baseline: str  # the sampled scheme whose cost is nearest search's budgets
    command: str
    settings: str  # what the page says about models and budgets, Markdown
    step_faults: bool = False  # count the faults of the policy's Game of 24 steps
    judge: bool = False  # how well the step judge's scores tell right from wrong
    pools: bool = False  # which answers each scheme wrote, and what choosing among them lost
    discussion: str = ""  # Markdown, written by hand from the finished run's numbers


PAGES = {
    "gsm8k": Page(
        name="search_gsm8k100",
        heading="Tree search on GSM8K (test, first 100 questions), default model",
        files=("search_gsm8k100.db",),
        questions=100, baseline="self-consistency@8",
        command="benchmarks/search_gsm8k100.sh    # resumable; the ponder eval line is in the "
                "script\n    ponder report runs/search_gsm8k100.db --markdown "
                "[--baseline self-consistency@8]",
        settings="Qwen2.5-Coder-0.5B-Instruct Q4_K_M through llama.cpp in-process, 2 threads, "
        "one seed. Chains: cot greedy; self-consistency@4, @8 and best-of-n@8 score one pool "
        "of 8 chains a question sampled at temperature 0.7, top-p 0.95, 512 tokens a chain "
        "(issue 3's settings, docs/results/gsm8k_test200.md; drawn again here, as that run's "
        "database did not survive a change of machine). The search schemes use the policy as "
        "its own judge (the probability of \"Yes\" to \"is this step correct?\"): beam@4 "
        "with 2 expansions a beam and mcts@16 capped at 4,096 completion tokens a question, "
        "tot (3 states kept, 3 sampled steps each, one 48-token value reply a state, depth "
        "≤ 8) at 6,144; a step is at most 256 tokens. Judge and value replies count in "
        "tokens/q; the judge's prompts do not (they are prefill, "
        "docs/results/tree_speed.md). Issue 3's chains ran on a machine with AVX2 only, so "
        "their seconds do not compare with these.", judge=True, pools=True,
        discussion="""
## Why search does not beat self-consistency here

At about self-consistency@8's tokens (0.9× for beam@4 and mcts@16, 1.4× for tot), no search
scheme beats it: mcts and tot are measurably worse (−17 and −10 points, intervals below zero),
beam is 8 points lower with an interval that just reaches +1, and none is better than greedy
cot. The last two tables say why, and both halves of the search are to blame.

**The judge does not rank.** The 0.5B, asked whether its own step is correct, says "Yes" with
probability about 0.57 whatever the step; a node's children differ by 0.016 (beam) to 0.030
(mcts) on average, and the score of the chosen path's last step separates right answers from
wrong ones no better than chance (AUROC 0.47 for both). Beam search and MCTS therefore
choose among siblings almost at random, and pay for the judging: its replies count in their
tokens, its prompts in their time (docs/results/tree_speed.md).

**The search narrows what there is to choose from.** Eight independent chains give 5.8
distinct answers a question, and a right one among them on 61% of the questions: that
is what voting chooses from, and it finds the right one on 35%. The trees write as many
finished answers (beam@4 6.6 a question, tot 11.6) but only about two distinct ones, since
their paths share prefixes from the first step on; a right one is among them on only
35% (beam), 27% (mcts) and 37% (tot) of the questions. A wrong early step
that the judge cannot demote is inherited by every path below it. Even a majority vote over
the trees' answers (beam's `selection=vote` weights it by path value) stays near the
schemes' own accuracy, because the right answer is seldom there to be found.

So with the policy as its own judge, search spends self-consistency's tokens on fewer,
correlated attempts and a random choice among them. Published gains of beam search over
best-of-N (Snell et al. 2024; Hugging Face's search-and-learn) use a trained process reward
model several times the policy's size. What would move this (not measured here): a trained
PRM as the scorer (`ponder/scorers/prm.py` loads the Math-Shepherd and Qwen2.5-Math-PRM
formats, but no such weights install offline, and a 1.5B+ PRM on 2 CPU cores would multiply
the run's hours); more diverse expansions (a higher step temperature, or DVTS's independent
subtrees, `dvts`, not run here); or a stronger policy judging a weaker one's steps.
"""),
    "game24": Page(
        name="search_game24",
        heading="Game of 24 (Tree-of-Thoughts test slice, records 900–999), default model",
        files=("search_game24.db",), questions=100,
        baseline="self-consistency@8:max_tokens=512",
        command="benchmarks/search_game24.sh    # resumable; the ponder eval line is in the "
                "script\n    ponder report runs/search_game24.db --markdown "
                "[--baseline self-consistency@8:max_tokens=512]",
        settings="Qwen2.5-Coder-0.5B-Instruct Q4_K_M through llama.cpp in-process, 2 threads, "
        "one seed. Every scheme asks Tree-of-Thoughts' chain-of-thought prompt (five worked "
        "puzzles), so a step is a line \"a op b = c (left: ...)\". Chains: 512 tokens "
        "(self-consistency and best-of-n share their 8 samples). beam@4 (4 expansions a beam) "
        "and mcts@32 use the rule scorer, which replays each step exactly from the puzzle's "
        "numbers and asks whether what is left can still make 24; tot keeps 3 states a depth "
        "with one 64-token value reply a state. Search budgets: 8,192 completion tokens a "
        "puzzle, a step ≤ 64 tokens. An answer is right when its expression uses the four "
        "numbers once each and equals 24, exactly (ponder/tasks/game24.py).",
        step_faults=True,
        discussion="""
## Why search does not beat self-consistency here

Nothing solves this slice with the 0.5B: beam search and MCTS solve one puzzle each (different
ones), the chain schemes and Tree of Thoughts none (the paper reports 4% for GPT-4's chain of
thought and 74% for its Tree of Thoughts). A search can only choose among the steps the policy
writes, and the table above shows how few are right: of the steps written from a state that
could still make 24, 6-10% are right and keep 24 reachable (ToT's proposals 1%). The commonest
fault is bookkeeping, not arithmetic: the "left:" list is not what the step leaves (55-62% of
the steps), or the step takes a number that is no longer left (about a fifth); the arithmetic
itself is rarely wrong (1-4%). The rule scorer prunes all of these at once, so beam search and
MCTS are not misled, they are starved: with so few right steps, beam@4's 16 candidates a depth
seldom hold a right second step below a right first one, and MCTS spends its 32 iterations on
dead nodes. Tree of Thoughts fares worst: its propose prompt asks for several next steps in one
reply, and more than half of the 0.5B's proposals take numbers it no longer has; when every
proposal of the first depth is pruned it stops, which is why it spends the fewest tokens.

Where some path did reach 24 in three right steps (the last column: 1-3 puzzles a scheme), the
policy mostly then wrote a wrong "Answer:" expression: of those paths only beam's and MCTS's
one each ended in a right answer. Turning the steps back into one expression over the four
numbers is a second skill the 0.5B lacks.

What would move this (not measured): a stronger policy (Qwen2.5-Coder-1.5B decodes at a half
to two thirds of the 0.5B's speed on this CPU, shared/MODELS.md: this grid took ~2 h); or
letting the task keep the state, writing each step's "left:" list and composing the final
expression from the steps, so that the policy only chooses operations. That departs from Tree
of Thoughts' setting, where the model does both.
"""),
}

FAULTS = (game24.ALIVE, game24.DEAD_END, game24.NOT_LEFT, game24.ARITHMETIC, game24.LEFT_LIST)


@dataclass
class Steps:
    """What the policy's Game of 24 steps were, for one scheme."""
    faults: Counter[str]  # replay's verdict on each step read
    reached: Counter[int]  # per puzzle: the most right steps in a row on any path it wrote


def step_faults(path: Path) -> dict[str, Steps]:
    """For each scheme, what `game24.replay` finds on each step ("a op b = c (left: ...)" line)
    the policy wrote from a state that could still make 24: the state is the puzzle, or the
    path of steps above it (the tree's parent nodes; the chain's earlier lines). A chain is
    read up to its first fault; a tree node whose path has a fault is not read (the search
    pruned it, or scored it 0). Three right steps in a row leave 24: a solved puzzle, if the
    answer line then writes it."""
    steps: dict[str, Steps] = {}
    with Store.read(path) as store:
        for row in store.rows():
            trace = _trace(row.trace)
            tally = steps.setdefault(label(row.scheme), Steps(Counter(), Counter()))
            most = 0
            for node in trace.nodes:
                above = ("" if node.parent is None else
                         "".join(trace.nodes[i].text for i in trace.path(node.parent)))
                if game24.replay(row.gold, above) != game24.ALIVE:
                    continue
                right = sum(map(game24.is_step, above.splitlines()))  # all right: it is alive
                for line in node.text.splitlines(keepends=True):
                    above += line
                    if not game24.is_step(line):
                        continue
                    tally.faults[verdict := game24.replay(row.gold, above)] += 1
                    if verdict != game24.ALIVE:
                        break
                    right += 1
                most = max(most, right)
            tally.reached[most] += 1
    return steps


def judge_table(path: Path, order: list[str]) -> list[str]:
    """For each scheme scored by the step judge: the judge's P(Yes) on its steps, how far
    apart it puts a node's children (max - min: what it gives the search to choose by), and
    how well the score of the chosen path's last step separates right answers from wrong ones
    (AUROC: 0.5 is chance)."""
    rows: dict[str, list[tuple[float, bool]]] = {}
    scores: dict[str, list[float]] = {}
    spreads: dict[str, list[float]] = {}
    with Store.read(path) as store:
        for row in store.rows():
            trace = _trace(row.trace)
            if trace.meta.get("scorer") != "judge":
                continue
            scheme = label(row.scheme)
            scores.setdefault(scheme, []).extend(
                n.score for n in trace.nodes if n.score is not None)
            for n in trace.nodes:
                kids = [k.score for k in map(trace.nodes.__getitem__, n.children)
                        if k.score is not None]
                if len(kids) > 1:
                    spreads.setdefault(scheme, []).append(max(kids) - min(kids))
            last = trace.nodes[trace.chosen[-1]] if trace.chosen else None
            if last is not None and last.score is not None:
                rows.setdefault(scheme, []).append((last.score, bool(row.correct)))
    lines = ["| scheme | steps scored | mean P(Yes) | mean spread among siblings | chosen "
             "paths right / wrong | AUROC of the last step's score |",
             "|---|---:|---:|---:|---|---:|"]
    for scheme in sorted(rows, key=order.index):
        right = [x for x, ok in rows[scheme] if ok]
        wrong = [x for x, ok in rows[scheme] if not ok]
        pairs = [(a > b) + 0.5 * (a == b) for a in right for b in wrong]
        auroc = f"{sum(pairs) / len(pairs):.2f}" if pairs else "—"
        spread = spreads.get(scheme, [0.0])
        lines.append(f"| {scheme} | {len(scores[scheme]):,} | "
                     f"{sum(scores[scheme]) / len(scores[scheme]):.3f} | "
                     f"{sum(spread) / len(spread):.3f} | {len(right)} / {len(wrong)} | {auroc} |")
    return lines


def pools_table(path: Path, order: list[str], task: Task) -> list[str]:
    """For each scheme, the answers it wrote (the finished leaves of its tree; a chain scheme's
    chains) and how it chose among them: how many a question, how many distinct, how often a
    right one is among them (what a perfect chooser would score), the scheme's accuracy, and
    what a plain majority vote over the same answers would score."""
    tally: dict[str, Counter[str]] = {}
    with Store.read(path) as store:
        for row in store.rows():
            answers = [n.answer for n in _trace(row.trace).nodes
                       if n.answer is not None and not n.children]
            counts = tally.setdefault(label(row.scheme), Counter())
            keys = Counter(task.key(a) for a in answers)
            counts.update(questions=1, answers=len(answers), distinct=len(keys),
                          correct=row.correct,
                          covered=any(task.check(a, row.gold) for a in answers))
            if keys:
                top = keys.most_common(1)[0][0]
                counts["vote"] += task.check(next(a for a in answers if task.key(a) == top),
                                             row.gold)
    lines = ["| scheme | answers a question | distinct | a right one among them | accuracy "
             "| majority vote over them |", "|---|---:|---:|---:|---:|---:|"]
    for scheme in sorted(tally, key=order.index):
        c, q = tally[scheme], tally[scheme]["questions"]
        lines.append(f"| {scheme} | {c['answers'] / q:.1f} | {c['distinct'] / q:.1f} | "
                     f"{c['covered'] / q:.1%} | {c['correct'] / q:.1%} | {c['vote'] / q:.1%} |")
    return lines


def machines(path: Path) -> str:
    """Which CPUs the run's sessions ran on: a run resumed across sessions may have moved
    machines, and its seconds with it."""
    with Store.read(path) as store:
        cpus = Counter(json.loads(m).get("cpu") or "a CPU not recorded (before the store kept it)"
                       for (m,) in store.conn.execute("SELECT machine FROM sessions"))
    return ", ".join(f"{n} on {cpu}" for cpu, n in cpus.most_common())


def _trace(text: str) -> Trace:
    return Trace.from_dict(json.loads(text) if text else {})


def label(scheme: str) -> str:
    """A table's name for a scheme: its spec without settings ("beam@4")."""
    return scheme.split(":")[0]


def faults_table(steps: dict[str, Steps], order: list[str]) -> list[str]:
    lines = ["| scheme | steps read | " + " | ".join(FAULTS) + " | puzzles with 1 / 2 / 3 right "
             "steps in a row |", "|---|---:|" + "---:|" * len(FAULTS) + "---|"]
    for scheme, tally in sorted(steps.items(), key=lambda item: order.index(item[0])):
        total = sum(tally.faults.values())
        shares = (f"{tally.faults[f] / total:.1%}" if total else "—" for f in FAULTS)
        reached = " / ".join(str(sum(n for k, n in tally.reached.items() if k >= depth))
                             for depth in (1, 2, 3))
        lines.append(f"| {scheme} | {total:,} | " + " | ".join(shares) + f" | {reached} of "
                     f"{tally.reached.total()} |")
    return lines


def verdicts(summaries: list[SchemeSummary], baseline: str) -> list[str]:
    base = next(s for s in summaries if s.scheme == baseline)
    lines = []
    for s in summaries:
        if s.family not in SEARCH or s.gain_vs_baseline is None:
            continue
        low, high = 100 * (s.gain_low or 0.0), 100 * (s.gain_high or 0.0)
        word = ("beat" if low > 0 else "did worse than" if high < 0
                else "did not measurably beat")
        lines.append(f"- **{s.scheme} {word} {baseline}**: {100 * s.gain_vs_baseline:+.1f} "
                     f"points [{low:+.1f}, {high:+.1f}] on the {s.gain_questions} questions "
                     f"both ran ({s.accuracy:.1%} against {base.accuracy:.1%} over all their "
                     f"rows), at {s.tokens_vs_baseline:.2f}× its tokens.")
    return lines


def write(page: Page, runs: Path, out_dir: Path) -> Path:
    files = [runs / f for f in page.files]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"{', '.join(missing)}: not written yet; run the measurement first")
    meta, rows = read_rows(files)
    order = meta.get("schemes", ())
    vs_cot = summarize(rows, order=order)
    vs_base = summarize(rows, order=order, baseline=page.baseline)
    stored = {s.scheme: s.questions for s in vs_cot}
    finished = all(stored.get(name, 0) >= page.questions for name in order) and len(order) > 1
    status = ", ".join(f"{label(name)} {stored.get(name, 0)}" for name in order)
    out = out_dir / f"{page.name}.md"
    png = out.with_suffix(".png")
    if finished:
        plot(vs_cot, png, title(meta))
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        f"# {page.heading}" + ("" if finished else " — IN PROGRESS"), "",
        (f"Complete: every scheme has all {page.questions} questions." if finished else
         f"**Status ({now}): questions stored per scheme: {status} (of "
         f"{page.questions}); the run continues across sessions. Every number below is on "
         "the questions stored so far and will change.**"), "",
        page.settings, "",
        f"Sessions that wrote it (seconds are model seconds on these machines): "
        f"{machines(files[-1])}.", "",
        "    " + page.command, "    .venv/bin/python benchmarks/search_doc.py   # this page", "",
        "## Against cot", "", to_markdown(vs_cot, meta, "wilson"),
        f"## Against {page.baseline}", "",
        f"The paired difference to {page.baseline}, the sampled scheme whose spend is nearest "
        "the search budgets, on the questions both ran; a search scheme beats it only if the "
        "interval lies above zero.", "",
        to_markdown(vs_base, meta, "wilson"),
        *verdicts(vs_base, page.baseline), "",
    ]
    if page.step_faults:
        text += [
            "## The policy's steps", "",
            "Each step (a line \"a op b = c (left: ...)\") the policy wrote from a state that "
            "could still make 24, replayed exactly from the puzzle's numbers "
            "(`game24.replay`): the share that were right and still left 24 reachable, and "
            "the first fault of the rest. Chains are read up to their first fault; tree "
            "nodes below a faulty step are not read. The last column counts the puzzles on "
            "which some path the scheme wrote got 1, 2 or 3 steps right in a row (three "
            "leave 24).", "",
            *faults_table(step_faults(files[0]), [label(n) for n in order]), ""]
    if page.judge:
        text += [
            "## The step judge", "",
            "The policy judging its own steps (P(Yes) to \"is this step correct?\"): the "
            "mean score, the mean gap between the best and worst child of a node (what the "
            "search chooses by), and how well the score of the chosen path's last step "
            "separates the questions answered right from those answered wrong (AUROC; 0.5 is "
            "chance).", "",
            *judge_table(files[-1], [label(n) for n in order]), ""]
    if page.pools:
        text += [
            "## The answers each scheme wrote", "",
            "Every finished answer a scheme wrote for a question (a chain's, or a leaf's of "
            "its tree: pruned ones included), read with the task's rule: how many, how many "
            "distinct, how often a right one was among them, how often the scheme chose a right "
            "one (its accuracy), and how often a majority vote over the same answers would "
            "have. The gap from the fourth column to the fifth is what choosing lost; the "
            "fourth itself is what the scheme's sampling or search left to choose from.", "",
            *pools_table(files[-1], [label(n) for n in order], TASKS[meta["task"]]), ""]
    if finished and page.discussion:
        text += [page.discussion.strip(), ""]
    if finished:
        text += [f"![accuracy against tokens]({png.name})", ""]
    write_text_atomic(out, "\n".join(text))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", metavar="PAGE", help=f"of {', '.join(PAGES)}")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="the databases' folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results",
                        help="where the pages go")
    args = parser.parse_args()
    if unknown := set(args.pages) - set(PAGES):
        parser.error(f"unknown page {', '.join(sorted(unknown))}; valid: {', '.join(PAGES)}")
    for key in args.pages or PAGES:
        print(f"wrote {write(PAGES[key], args.runs, args.out)}")


if __name__ == "__main__":
    main()
