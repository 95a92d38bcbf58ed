"""Run a task × schemes × seeds grid into a results store, resumably.

    ponder eval gsm8k --split test --limit 200 --model default \
        --schemes cot,self-consistency@8,adaptive@16 --seeds 3 --out runs/gsm8k.db [--resume]

Order of work: question-major — for each question, every scheme and seed — so that at any moment
(and after a kill) all schemes cover the same questions and a partial report compares like with
like; the progress bar's ETA averages over the same mix of schemes the rest of the run has.
The models are loaded once for the whole grid: the policy (`--model SPEC`) and any model for
another role (`--model judge=SPEC`), which goes to the schemes that ask that role. Each scheme
runs exactly as `ponder solve --scheme` runs it; each row keeps its cost per (role, model).

`--concurrency K` works on K questions at once, each on its own thread (a question's schemes
and seeds run in order on it); a batching backend (llama.cpp) decodes their sequences together,
which matters most for one-chain schemes: 1 sequence a step uses a CPU far less than 8.
A drain (`kill -USR1`, or a first Ctrl-C; drain.py) finishes the questions in flight and starts
no more, so a long run can be stopped without losing the questions it is working on.
`--share-samples` gives each question one pool of seeded samples that all its schemes draw from
(shared.py): self-consistency@4 uses the first 4 of the 16 that self-consistency@16 draws, and
so on; without it every scheme draws its own samples. Each sample drawn is kept in the store
as it arrives, so a resumed run finishes the questions a kill interrupted without drawing
their samples again.

Seeds: seed s (0 ≤ s < --seeds) is the scheme config's `seed`. A greedy scheme (temperature 0,
i.e. cot by default) gives the same chain for every seed, so it is run once per question and
stored as seed 0; the report shows its `seeds` as 1.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, UnknownName
from ponder.core.protocols import LanguageModel, ShouldStop
from ponder.core.types import POLICY, ROLES, Completion
from ponder.eval.drain import Drain, drain_on_signals
from ponder.eval.progress import LogLines, accuracy_text, progress_bar
from ponder.eval.shared import SharedSamples
from ponder.eval.store import Row, Store
from ponder.schemes import Scheme, get_scheme
from ponder.tasks.base import DEFAULT_CHECKER, Record, Task
from ponder.tasks.records import load_questions

# Builds the models for a run: the policy, or models by role (tests hand in fakes).
ModelFactory = Callable[[], "LanguageModel | Mapping[str, LanguageModel]"]


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and where to write it. Validates itself before anything is loaded."""

    task: str  # a task name, or a JSONL file of questions read through `fields`
    schemes: tuple[str, ...]
    out: Path
    model: str = "default"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    # models for roles besides the policy (role -> spec), given to the schemes that ask them
    roles: Mapping[str, str] = field(default_factory=dict)
    split: str = "test"
    data: Path | None = None
    limit: int | None = None
    start: int = 0  # skip the first `start` questions (e.g. ToT's Game of 24 slice: 900-999)
    seeds: int = 1
    max_tokens: int | None = None
    resume: bool = False
    concurrency: int = 1
    share_samples: bool = False
    temperature: float | None = None  # for sampled schemes; greedy ones stay greedy
    # A task given as a JSONL file: question/answer/id -> the file's column, and its checker
    fields: Mapping[str, str] = field(default_factory=dict)
    checker: str | None = None
    instruction: str | None = None  # replaces the task's system message ("" for none)

    def __post_init__(self) -> None:
        if not self.schemes:
            raise ConfigError("schemes", "", "name one or more, e.g. cot,self-consistency@8")
        if len(set(self.schemes)) != len(self.schemes):
            raise ConfigError("schemes", ",".join(self.schemes), "name each scheme once")
        if self.seeds < 1:
            raise ConfigError("seeds", self.seeds, "use a positive number of seeds")
        if self.concurrency < 1:
            raise ConfigError("concurrency", self.concurrency, "use 1 or more questions at once")
        if self.start < 0:
            raise ConfigError("start", self.start, "use 0 or a positive question index")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", self.limit, "use a positive number of questions")
        for spec in self.schemes:
            self.scheme(spec, 0)  # unknown names and bad settings fail now, in one line
        for role in self.roles:
            asked = [s for s in self.schemes if role in self.scheme(s, 0).entry.roles]
            if role not in ROLES or role == POLICY:
                raise UnknownName("role", role, [r for r in ROLES if r != POLICY])
            if not asked:
                raise ConfigError("model", f"{role}={self.roles[role]}",
                                  f"none of {', '.join(self.schemes)} asks a {role}; drop it")
        if self.load_task().path is not None and self.data is not None:
            raise ConfigError("data", str(self.data), "a task given as a JSONL file is its own "
                              "data; drop --data")

    def load_task(self) -> Task:
        from ponder.tasks import resolve_task

        return resolve_task(self.task, fields=self.fields, checker=self.checker,
                            instruction=self.instruction)

    def scheme(self, spec: str, seed: int) -> Scheme:
        scheme = get_scheme(spec, seed=seed, max_tokens=self.max_tokens)
        if self.temperature is None or scheme.config.temperature == 0:
            return scheme  # (a temperature written in the spec wins over --temperature)
        return get_scheme(spec, seed=seed, max_tokens=self.max_tokens,
                          temperature=self.temperature)

    def seeds_for(self, spec: str) -> range:
        """Greedy schemes are deterministic: one run, stored as seed 0."""
        scheme = self.scheme(spec, 0)
        once = scheme.entry.greedy_once and scheme.config.temperature == 0
        return range(1) if once else range(self.seeds)

    def meta(self) -> dict[str, Any]:
        """The store's metadata; the keys in store.IDENTITY must match on --resume."""
        settings: dict[str, Any] = {"max_tokens": self.max_tokens}
        if self.share_samples:  # changes which samples schemes see; absent in older files
            settings["share_samples"] = True
        if self.temperature is not None:
            settings["temperature"] = self.temperature
        if self.start:  # which questions: part of the identity, absent in older files
            settings["start"] = self.start
        task = self.load_task()
        if task.path is not None:  # a task file: how it is read, and what it held, in full
            settings["fields"] = {"question": task.question_field, "answer": task.answer_field,
                                  "id": task.id_field}
            settings["checker"] = self.checker or DEFAULT_CHECKER
            settings["sha256"] = file_digest(task.path)
        if self.instruction is not None:  # absent unless given, as in older files
            settings["instruction"] = self.instruction
        roles = {"roles": dict(self.roles)} if self.roles else {}  # absent in older files
        return {"model": self.model, "model_args": dict(self.model_args), **roles,
                "task": str(task.path.resolve()) if task.path else self.task,
                "split": self.split, "data": str(self.data.resolve()) if self.data else None,
                "settings": settings, "limit": self.limit,
                "schemes": list(self.schemes), "seeds": self.seeds}


def file_digest(path: Path) -> str:
    """sha256 of a task file: a resumed run must read the questions the first one read."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def task_of(meta: Mapping[str, Any]) -> Task:
    """The task a results file was made with, from its metadata (`EvalConfig.meta`)."""
    from ponder.tasks import resolve_task

    settings = meta.get("settings") or {}
    fields = {k: v for k, v in (settings.get("fields") or {}).items() if v is not None}
    return resolve_task(meta["task"], fields=fields,
                        checker=settings.get("checker"), instruction=settings.get("instruction"))


@dataclass(frozen=True)
class Job:
    position: int
    record: Record
    scheme: str
    seed: int

    @property
    def key(self) -> tuple[str, str, int]:
        return self.record.id, self.scheme, self.seed


@dataclass
class Outcome:
    planned: int  # rows in the whole grid
    resumed: int  # already in the store when this run started
    written: int  # written by this run
    drained: bool = False  # stopped on request (a drain) before the grid was done


def load_records(cfg: EvalConfig, task: Task) -> list[Record]:
    """The grid's questions: `--data` (a JSONL file or a directory) or the task's own source,
    from `--start`, at most `--limit`, each with a gold answer and its own id."""
    return load_questions(task, split=cfg.split, data=cfg.data, start=cfg.start,
                          limit=cfg.limit)


def plan(cfg: EvalConfig, records: Sequence[Record]) -> list[Job]:
    """Every row of the grid, question-major."""
    return [Job(position, record, spec, seed)
            for position, record in enumerate(records, cfg.start)
            for spec in cfg.schemes
            for seed in cfg.seeds_for(spec)]


def solve(job: Job, cfg: EvalConfig, task: Task, model: LanguageModel,
          should_stop: ShouldStop | None = None,
          roles: Mapping[str, LanguageModel] | None = None) -> Row:
    """Run one job as `ponder solve` would and judge it; `roles` are the run's models besides
    the policy, each given to the schemes that ask it."""
    scheme = cfg.scheme(job.scheme, job.seed)
    asked = {r: m for r, m in (roles or {}).items() if r in scheme.entry.roles}
    result = scheme(task.problem(job.record), model=model, roles=asked,
                    should_stop=should_stop)
    assert job.record.gold is not None  # load_records guarantees it
    correct = result.answer is not None and task.check(result.answer, job.record.gold)
    usage = result.usage
    return Row(
        question_id=job.record.id, scheme=job.scheme, seed=job.seed, position=job.position,
        config=json.dumps(asdict(scheme.config)), correct=int(correct), answer=result.answer,
        gold=job.record.gold, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, reasoning_tokens=usage.reasoning_tokens,
        cached_tokens=usage.cached_tokens, model_calls=usage.model_calls, seconds=usage.seconds,
        finish_reason=result.finish_reason, trace=json.dumps(result.trace.to_dict()),
        model_seconds=usage.model_seconds or None,  # 0: the backend does not report it
        by_role=json.dumps([p.to_dict() for p in usage.by_role]))


def run_eval(cfg: EvalConfig, *, model_factory: ModelFactory | None = None,
             progress: bool = True, command: str = "", drain: Drain | None = None) -> Outcome:
    """Run (or resume) the grid. `model_factory` replaces loading `cfg.model` and `cfg.roles`
    (each distinct spec once, with `cfg.model_args`), e.g. for tests; the models are created
    once, only if work remains.
    Setting `drain` (or, on the main thread, SIGUSR1 or a first Ctrl-C) ends the run once the
    questions in flight are stored."""
    from ponder.models.catalog import close_models, load_models

    task = cfg.load_task()
    jobs = plan(cfg, load_records(cfg, task))
    drain = Drain() if drain is None else drain
    with (drain_on_signals(drain),  # from the model's load on: a signal then starts nothing
          Store.create(cfg.out, cfg.meta(), resume=cfg.resume, command=command) as store):
        done = store.done()
        todo = [job for job in jobs if job.key not in done]
        outcome = Outcome(planned=len(jobs), resumed=len(jobs) - len(todo), written=0)
        if not todo:
            return outcome
        right = sum(done[job.key] for job in jobs if job.key in done)
        pools = Pools(store.samples(job.record.id for job in todo) if cfg.share_samples else {},
                      store.add_sample)
        models = (by_role(model_factory()) if model_factory
                  else load_models({POLICY: cfg.model, **cfg.roles}, **cfg.model_args))
        try:
            with progress_bar(progress) as bar:
                tid = bar.add_task(task.name, total=len(jobs), completed=outcome.resumed,
                                   acc=accuracy_text(right, outcome.resumed))
                plain = progress and not bar.console.is_terminal
                lines = LogLines(bar, tid, task.name) if plain else None
                for row in _rows(todo, cfg, task, models, pools, drain):
                    store.add(row)  # committed: a kill after this line keeps the row
                    outcome.written += 1
                    right += row.correct
                    bar.update(tid, advance=1, description=f"{row.scheme} seed {row.seed}",
                               acc=accuracy_text(right, outcome.resumed + outcome.written))
                    if lines is not None:
                        lines.maybe_print()
        finally:
            close_models(models)
    outcome.drained = drain.is_set() and outcome.resumed + outcome.written < outcome.planned
    return outcome


@dataclass
class Pools:
    """The shared-sample pools a run starts from (question id -> pool -> index -> sample) and
    where it keeps each new sample; `keep` is called on the thread that owns the store."""

    stored: Mapping[str, Mapping[str, Mapping[int, Completion]]]
    keep: Callable[[str, str, int, Completion], None]


@dataclass(frozen=True)
class _Sample:
    """A sample drawn on a worker thread, on its way to the store."""

    question_id: str
    pool: str
    index: int
    sample: Completion


def by_role(made: LanguageModel | Mapping[str, LanguageModel]) -> dict[str, LanguageModel]:
    """A model factory's result as models by role: a lone model is the policy."""
    return dict(made) if isinstance(made, Mapping) else {POLICY: made}


def _rows(todo: Sequence[Job], cfg: EvalConfig, task: Task, models: Mapping[str, LanguageModel],
          pools: Pools, drain: Drain) -> Iterator[Row]:
    """The rows of `todo` as they finish, `cfg.concurrency` questions at a time; once `drain`
    is set, no question starts. Closing the iterator (an error, a second Ctrl-C) stops the
    questions in flight; their rows are not stored (their samples are)."""
    questions: dict[str, list[Job]] = {}
    for job in todo:
        questions.setdefault(job.record.id, []).append(job)
    stop = threading.Event()
    if cfg.concurrency == 1:
        for jobs in questions.values():
            if drain.is_set():
                return
            yield from _question(jobs, cfg, task, models, stop, pools.stored.get(jobs[0].record.id),
                                 partial(pools.keep, jobs[0].record.id))
        return
    done = object()
    results: queue.Queue[Row | _Sample | BaseException | object] = queue.Queue()

    def work(jobs: list[Job]) -> None:
        q = jobs[0].record.id
        try:
            if drain.is_set():  # a queued question: not begun, so nothing to finish
                return
            for row in _question(jobs, cfg, task, models, stop, pools.stored.get(q),
                                 lambda *sample: results.put(_Sample(q, *sample))):
                results.put(row)
        except BaseException as e:  # handed to the main thread, which raises it
            results.put(e)
        finally:
            results.put(done)

    pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="ponder-eval")
    try:
        for jobs in questions.values():
            pool.submit(work, jobs)
        left = len(questions)
        while left:
            item = results.get()
            if item is done:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            elif isinstance(item, _Sample):
                pools.keep(item.question_id, item.pool, item.index, item.sample)
            else:
                assert isinstance(item, Row)
                yield item
    finally:
        stop.set()  # runs in flight end within a decode step; queued questions never start
        pool.shutdown(wait=True, cancel_futures=True)


def _question(jobs: Sequence[Job], cfg: EvalConfig, task: Task,
              models: Mapping[str, LanguageModel], stop: threading.Event,
              stored: Mapping[str, Mapping[int, Completion]] | None,
              keep: Callable[[str, int, Completion], None]) -> Iterator[Row]:
    """One question's jobs in grid order, on one sample pool of the policy's samples with
    --share-samples (started from `stored`; each new sample goes to `keep`)."""
    policy = models[POLICY]
    lm: LanguageModel = (SharedSamples(policy, stored=stored, on_sample=keep)
                         if cfg.share_samples else policy)
    roles = {r: m for r, m in models.items() if r != POLICY}
    for job in jobs:
        if stop.is_set():
            return
        row = solve(job, cfg, task, lm, should_stop=stop.is_set, roles=roles)
        if stop.is_set():  # cut short: not a result
            return
        yield row
