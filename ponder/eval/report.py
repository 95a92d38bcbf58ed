"""Reports on a results store: accuracy with a 95% interval, cost, and accuracy vs compute.

Confidence intervals (`CI_METHODS`, chosen with `ponder report --ci`):
  * wilson (default) — the Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001) over
    all question × seed rows of a scheme, each row one Bernoulli trial. Closed form, no RNG,
    good coverage near 0 and 1. It counts a question's seeds as independent trials; they are
    repeated measures of the same question, so for sampled schemes with several seeds the
    interval is somewhat narrower than the question-level uncertainty.
  * bootstrap — a cluster (question-level) percentile bootstrap: resample questions with
    replacement, keeping all seeds of a drawn question together; 2,000 resamples, fixed RNG.
    This respects seeds as repeated measures.

Costs are means per row, i.e. per question per run: completion tokens (every token generated,
discarded samples included) and seconds. Seconds are model time where the backend reports it
(llama.cpp: each batched step's time shared among its sequences, plus prefills), because an
eval that runs several questions at once, or shares samples between schemes, makes a row's
wall time mean little; otherwise wall time.

Both comparisons are to a baseline scheme: `cot` by default (or `cot` with settings, such as
`cot:max_tokens=512`, where no plain `cot` was run), any scheme with `ponder report --baseline`.
`vs cot` is a scheme's mean completion tokens over the baseline's. `Δ vs cot` is the *paired*
difference: on the questions both ran, the mean over questions of (the scheme's accuracy on the
question, averaged over its seeds) minus (the baseline's), with a 95% percentile bootstrap over
questions. Two schemes' own intervals overlapping says little about their difference; the paired
interval is the one to judge a gain by.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.files import atomic_file
from ponder.core.types import Usage
from ponder.eval.store import Row, Store
from ponder.schemes import parse_spec

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 2000


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for `correct` successes in `n` trials."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(p, max(0.0, center - half)), max(p, min(1.0, center + half))  # p in, rounding


def _wilson_rows(rows: Sequence[Row]) -> tuple[float, float]:
    return wilson(sum(r.correct for r in rows), len(rows))


def _resamples(n: int) -> np.ndarray:
    """Question indices of the bootstrap's resamples: one row per resample, fixed RNG."""
    return np.random.default_rng(0).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _by_question(rows: Sequence[Row]) -> dict[str, list[int]]:
    by_question: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        by_question[r.question_id].append(r.correct)
    return by_question


def _bootstrap_rows(rows: Sequence[Row]) -> tuple[float, float]:
    """Percentile interval of accuracy over question-level resamples (seeds stay together)."""
    by_question = _by_question(rows)
    correct = np.array([sum(v) for v in by_question.values()], dtype=float)
    trials = np.array([len(v) for v in by_question.values()], dtype=float)
    draws = _resamples(len(correct))
    return _percentiles(correct[draws].sum(axis=1) / trials[draws].sum(axis=1))


def paired_difference(rows: Sequence[Row], baseline: Sequence[Row]
                      ) -> tuple[float, float, float, int] | None:
    """Accuracy minus the baseline's on the questions both ran (each question's accuracy the
    mean over its seeds): (difference, 95% bootstrap low, high, questions), None if none."""
    mine, theirs = _by_question(rows), _by_question(baseline)
    shared = [q for q in mine if q in theirs]
    if not shared:
        return None
    d = np.array([np.mean(mine[q]) - np.mean(theirs[q]) for q in shared])
    low, high = _percentiles(d[_resamples(len(d))].mean(axis=1))
    return float(d.mean()), low, high, len(shared)


@dataclass(frozen=True)
class CIMethod:
    interval: Callable[[Sequence[Row]], tuple[float, float]]
    description: str


CI_METHODS: dict[str, CIMethod] = {
    "wilson": CIMethod(_wilson_rows, "95% CI: Wilson score interval over question×seed rows "
                       "(seeds counted as independent trials)"),
    "bootstrap": CIMethod(_bootstrap_rows, f"95% CI: percentile bootstrap over questions "
                          f"({BOOTSTRAP_RESAMPLES} resamples; a question's seeds resampled "
                          "together)"),
}


# -- reading -------------------------------------------------------------------------------

SAME_RUN = ("task", "split", "model")  # what files reported together must share
# ... and how they read and asked the questions (absent, in files of named tasks, alike)
SAME_READING = ("fields", "checker", "sha256", "instruction")


def parse_positions(text: str) -> range:
    """`START:STOP` (either end optional) -> the range of question positions it names."""
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        first = int(start) if start.strip() else 0
        last = int(stop) if stop.strip() else 2**62
    except ValueError:
        raise ConfigError("positions", text, "write START:STOP, e.g. :100 or 900:1000"
                          ) from None
    if first < 0 or last <= first:
        raise ConfigError("positions", text, "START must be ≥ 0 and below STOP")
    return range(first, last)


def read_rows(paths: Sequence[Path], positions: str | None = None
              ) -> tuple[dict[str, Any], list[Row]]:
    """The rows of one or more results files as one report: their task, split and model must
    agree, and no question × scheme × seed may be stored twice. The meta is the first file's,
    with every file's schemes in order; `positions` (START:STOP) keeps only those questions."""
    keep = parse_positions(positions) if positions is not None else None
    meta: dict[str, Any] = {}
    schemes: list[str] = []
    rows: dict[tuple[str, str, int], Row] = {}
    for path in paths:
        with Store.read(path) as store:
            this = store.meta()
            if not meta:
                meta = this
            for key in SAME_RUN:
                if this.get(key) != meta.get(key):
                    raise DataError(f"{path} holds {key}={this.get(key)!r} but {paths[0]} holds "
                                    f"{meta.get(key)!r}; report one task, split and model at "
                                    "a time")
            for key in SAME_READING:
                mine, first = ((m.get("settings") or {}).get(key) for m in (this, meta))
                if mine != first:
                    raise DataError(f"{path} read its questions with {key}={mine!r} but "
                                    f"{paths[0]} with {first!r}; report runs that asked and "
                                    "judged the questions alike")
            schemes += [s for s in this.get("schemes", ()) if s not in schemes]
            for r in store.rows(traces=False):
                if keep is not None and r.position not in keep:
                    continue
                if r.key in rows:
                    raise DataError(f"{path} and an earlier file both hold {r.key}; report "
                                    "files with different schemes (or seeds)")
                rows[r.key] = r
    meta["schemes"] = schemes
    if len(paths) > 1:
        meta["files"] = [str(p) for p in paths]
    if keep is not None:
        meta["positions"] = positions
    return meta, sorted(rows.values(), key=lambda r: (r.position, r.scheme, r.seed))


@dataclass(frozen=True)
class RoleCost:
    """What one (role, model) cost a scheme, per question (mean over its rows)."""

    role: str
    model: str
    prompt_tokens: float
    completion_tokens: float
    model_calls: float
    model_seconds: float


@dataclass
class SchemeSummary:
    scheme: str
    family: str  # the scheme name without @N: one line in the plot
    size: int | None  # the N of name@N
    rows: int
    questions: int
    seeds: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_completion_tokens: float
    mean_seconds: float  # model seconds where every row has them, else wall seconds
    mean_wall_seconds: float
    seconds_are_model_time: bool
    mean_model_calls: float
    baseline: str | None  # the scheme the next two compare to (see the module docstring)
    tokens_vs_baseline: float | None
    # Paired accuracy difference to the baseline on the questions both ran
    gain_vs_baseline: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    gain_questions: int = 0
    by_role: list[RoleCost] = field(default_factory=list)  # empty for files before roles


def summarize(rows: Iterable[Row], *, ci: str = "wilson", order: Sequence[str] = (),
              baseline: str | None = None) -> list[SchemeSummary]:
    """One summary per scheme spec, in `order` first, then the rest alphabetically; costs and
    gains relative to `baseline` (by default cot, if it was run)."""
    if ci not in CI_METHODS:
        raise UnknownName("confidence-interval method", ci, CI_METHODS)
    by_scheme: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_scheme[r.scheme].append(r)
    names = [s for s in order if s in by_scheme] + sorted(set(by_scheme) - set(order))
    out = [_summary(name, by_scheme[name], CI_METHODS[ci]) for name in names]
    if baseline is None:
        base = next((s for s in out if s.scheme == "cot"), None)  # else cot with settings
        base = base or next((s for s in out if s.family == "cot"), None)
    elif (base := next((s for s in out if s.scheme == baseline), None)) is None:
        raise UnknownName("baseline scheme", baseline, names)
    if base is None:
        return out
    for s in out:
        s.baseline = base.scheme
        if base.mean_completion_tokens > 0:
            s.tokens_vs_baseline = s.mean_completion_tokens / base.mean_completion_tokens
        paired = paired_difference(by_scheme[s.scheme], by_scheme[base.scheme])
        if s is not base and paired is not None:
            s.gain_vs_baseline, s.gain_low, s.gain_high, s.gain_questions = paired
    return out


def _summary(name: str, rows: Sequence[Row], method: CIMethod) -> SchemeSummary:
    family, size, _ = parse_spec(name)
    n = len(rows)
    correct = sum(r.correct for r in rows)
    low, high = method.interval(rows)
    model_time = all(r.model_seconds is not None for r in rows)
    wall = sum(r.seconds for r in rows) / n
    return SchemeSummary(
        scheme=name, family=family, size=size, rows=n,
        questions=len({r.question_id for r in rows}), seeds=len({r.seed for r in rows}),
        correct=correct, accuracy=correct / n, ci_low=low, ci_high=high,
        mean_completion_tokens=sum(r.completion_tokens for r in rows) / n,
        mean_seconds=sum(r.model_seconds or 0.0 for r in rows) / n if model_time else wall,
        mean_wall_seconds=wall, seconds_are_model_time=model_time,
        mean_model_calls=sum(r.model_calls for r in rows) / n, baseline=None,
        tokens_vs_baseline=None, by_role=_role_costs(rows))


def _role_costs(rows: Sequence[Row]) -> list[RoleCost]:
    """Each (role, model)'s mean cost per row, in the order the roles were first asked."""
    total = Usage()
    for r in rows:
        total += Usage(by_role=r.usage_by_role())
    n = len(rows)
    return [RoleCost(p.role, p.model, p.prompt_tokens / n, p.completion_tokens / n,
                     p.model_calls / n, p.model_seconds / n) for p in total.by_role]


def role_table(summaries: Sequence[SchemeSummary]) -> list[list[str]] | None:
    """Rows of the cost-by-role table (scheme, role, model, tokens/q, prompt tokens/q, calls/q,
    model s/q), or None where every scheme used one model in one role."""
    if all(len(s.by_role) <= 1 for s in summaries):
        return None
    return [[s.scheme, c.role, c.model, f"{c.completion_tokens:,.0f}",
             f"{c.prompt_tokens:,.0f}", f"{c.model_calls:.1f}", f"{c.model_seconds:.2f}"]
            for s in summaries for c in s.by_role]


ROLE_HEADERS = ("scheme", "role", "model", "tokens/q", "prompt tokens/q", "calls/q",
                "model s/q")


# -- output formats -------------------------------------------------------------------------

def headers(summaries: Sequence[SchemeSummary]) -> tuple[str, ...]:
    base = _baseline(summaries) or "cot"
    return ("scheme", "accuracy", "95% CI", "rows", "questions", "seeds", "tokens/q",
            "seconds/q", f"vs {base}", f"Δ vs {base} (points)")


def _baseline(summaries: Sequence[SchemeSummary]) -> str | None:
    return next((s.baseline for s in summaries if s.baseline), None)


def table_cells(s: SchemeSummary) -> list[str]:
    return [s.scheme, f"{s.accuracy:.1%}", f"{s.ci_low:.1%}–{s.ci_high:.1%}", str(s.rows),
            str(s.questions), str(s.seeds), f"{s.mean_completion_tokens:,.0f}",
            f"{s.mean_seconds:.2f}",
            "—" if s.tokens_vs_baseline is None else f"{s.tokens_vs_baseline:.1f}×",
            _gain_cell(s)]


def _gain_cell(s: SchemeSummary) -> str:
    if s.gain_vs_baseline is None or s.gain_low is None or s.gain_high is None:
        return "—"
    cell = (f"{100 * s.gain_vs_baseline:+.1f} [{100 * s.gain_low:+.1f}, "
            f"{100 * s.gain_high:+.1f}]")
    return cell if s.gain_questions == s.questions else f"{cell} on {s.gain_questions} q"


def comparison_note(summaries: Sequence[SchemeSummary]) -> str:
    base = _baseline(summaries) or "cot"
    return (f"vs {base}: tokens/q over {base}'s; Δ vs {base}: accuracy points over {base}'s on "
            "the questions both ran, paired, with a 95% bootstrap interval over questions.")


def title(meta: Mapping[str, Any]) -> str:
    where = f" · questions {meta['positions']}" if meta.get("positions") else ""
    return (f"{meta.get('task', '?')} ({meta.get('split', '?')}) · model "
            f"{meta.get('model', '?')}{where}")


def to_markdown(summaries: Sequence[SchemeSummary], meta: Mapping[str, Any], ci: str) -> str:
    heads = headers(summaries)
    lines = [f"**{title(meta)}**", "",
             "| " + " | ".join(heads) + " |",
             "|" + "|".join("---" if h in ("scheme", "95% CI") else "---:" for h in heads) + "|"]
    lines += ["| " + " | ".join(table_cells(s)) + " |" for s in summaries]
    lines += ["", f"{CI_METHODS[ci].description}. tokens/q: mean completion tokens per question "
              f"(discarded samples included); seconds/q: {_seconds_note(summaries)}; "
              + comparison_note(summaries)]
    if (roles := role_table(summaries)) is not None:
        lines += ["", "Cost by role and model, per question:", "",
                  "| " + " | ".join(ROLE_HEADERS) + " |",
                  "|---|---|---|" + "---:|" * (len(ROLE_HEADERS) - 3)]
        lines += ["| " + " | ".join(cells) + " |" for cells in roles]
    return "\n".join(lines) + "\n"


def _seconds_note(summaries: Sequence[SchemeSummary]) -> str:
    if all(s.seconds_are_model_time for s in summaries):
        return ("mean model seconds per question (each batched decode step's time shared among "
                "the sequences in it, whatever question they belong to)")
    if not any(s.seconds_are_model_time for s in summaries):
        return "mean wall seconds per question"
    return "model seconds where the backend reports them, wall seconds elsewhere (see --json)"


def to_json(summaries: Sequence[SchemeSummary], meta: Mapping[str, Any], ci: str) -> str:
    payload = {"meta": dict(meta), "baseline": _baseline(summaries),
               "ci": {"method": ci, "level": 0.95, "description": CI_METHODS[ci].description},
               "schemes": [asdict(s) for s in summaries]}
    return json.dumps(payload, indent=1)


def plot_lines(summaries: Sequence[SchemeSummary]) -> dict[str, list[SchemeSummary]]:
    """The plot's lines: one per scheme family and settings (self-consistency@4 and @8 are one
    line). A family run with several settings is labelled by them: `adaptive (defaults)`,
    `adaptive (give_up_after=4)`."""
    lines: dict[tuple[str, str], list[SchemeSummary]] = defaultdict(list)
    for s in summaries:
        lines[(s.family, s.scheme.partition(":")[2])].append(s)
    runs = Counter(family for family, _ in lines)
    return {family if runs[family] == 1 else f"{family} ({settings or 'defaults'})": members
            for (family, settings), members in lines.items()}


PLOT_X = {"tokens": "mean completion tokens per question (log scale)",
          "seconds": "mean seconds per question (log scale)"}


def plot(summaries: Sequence[SchemeSummary], path: Path, heading: str, axis: str = "tokens"
         ) -> None:
    """Accuracy vs mean completion tokens (or seconds: model seconds where every row has them)
    per question, log x, one line per scheme family and settings (`plot_lines`), error bars
    from the CIs. Written whole or not at all."""
    if axis not in PLOT_X:
        raise UnknownName("plot axis", axis, PLOT_X)
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plot", str(path), "drawing needs matplotlib: pip install matplotlib"
                          ) from None
    matplotlib.use("Agg")  # no display; safe in CI and over ssh
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for family, members in plot_lines(summaries).items():
        members = sorted(members, key=lambda s: (s.size or 0, s.mean_completion_tokens))
        xs = [max(s.mean_completion_tokens if axis == "tokens" else s.mean_seconds, 1e-3)
              for s in members]  # log axis: no zeros
        ys = [s.accuracy for s in members]
        yerr = [[max(0.0, s.accuracy - s.ci_low) for s in members],  # a percentile bootstrap
                [max(0.0, s.ci_high - s.accuracy) for s in members]]  # may leave the point out
        ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=3, label=family,
                    linestyle="-" if len(members) > 1 else "none")
        offset = (4, -10) if len(members) > 1 else (4, 5)  # a lone point's label goes above,
        for s, x, y in zip(members, xs, ys, strict=True):  # off a line's labels below right
            if s.size is not None:
                ax.annotate(f"@{s.size}", (x, y), textcoords="offset points", xytext=offset,
                            fontsize=8)
    ax.set_xscale("log")
    # Plain numbers (1000 rather than 10^3); minor ticks labelled only over a short range.
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False,
                                                                minor_thresholds=(2, 0.5)))
    ax.set_xlabel(PLOT_X[axis])
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(heading, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside: hides no point
    fig.tight_layout()
    try:
        with atomic_file(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120)
    finally:
        plt.close(fig)
