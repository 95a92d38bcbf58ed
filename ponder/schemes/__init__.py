"""The scheme table: every way ponder can think, by name (after search-and-learn's APPROACHES).

`get_scheme("self-consistency@8", temperature=0.5)` returns a ready `Scheme`. Wherever a scheme
is named, a spec may also carry settings: `name@N:key=value:key=value`, e.g.
`self-consistency@8:temperature=0.3` — `@N` sets the number of samples (or, for tree schemes,
their main width); values are read as JSON where they parse (numbers, true/false), else text.

The table binds each scheme's name, and its entry holds the facts other modules read about it
(the roles it asks models in, whether its reasoning streams live, whether it samples once,
whether it cuts chains into steps): the CLI, the server, evaluation and the tests read them
from here, so adding a scheme is one file and one entry.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ponder.core.errors import ConfigError, UnknownName
from ponder.core.problem import Problem
from ponder.core.protocols import LanguageModel, OnText, Scorer, ShouldStop
from ponder.core.types import POLICY, ROLES, Result, Trace
from ponder.schemes import (
    adaptive,
    aggregate,
    beam,
    best_of_n,
    budget,
    cascade,
    cot,
    direct,
    dvts,
    mcts,
    plan_execute,
    refine,
    self_consistency,
    tot,
)
from ponder.schemes.base import Run, SchemeConfig, ScoredConfig
from ponder.scorers import RewardFn

JUDGED = (POLICY, "judge")  # schemes whose scorer may be a model: the policy, or a judge


@dataclass(frozen=True)
class Entry:
    """One scheme: its function, its settings, and the facts other modules read about it."""

    run: Callable[[Problem, Run, Any], Result]
    config: type[SchemeConfig]
    summary: str
    roles: tuple[str, ...] = (POLICY,)  # roles it asks models in (each falls back to the policy)
    streams: bool = False  # one chain whose reasoning a client can watch as it is written
    single: bool = False  # samples one chain: n is 1
    steps: bool = False  # cuts chains into steps at the problem's step delimiter
    greedy_once: bool = True  # at temperature 0 every seed gives the same result: run once
    own_scorers: tuple[str, ...] = ()  # scorer names only this scheme knows (ToT's "value")


SCHEMES: dict[str, Entry] = {
    "direct": Entry(direct.run, direct.Config, "the answer alone, no chain of thought",
                    single=True),
    "cot": Entry(cot.run, cot.Config, "one chain of thought, greedy", streams=True, single=True),
    "budget": Entry(budget.run, budget.Config, "one chain whose thinking is cut at a token "
                    "budget or extended with Wait (s1 budget forcing)", streams=True, single=True),
    "self-consistency": Entry(self_consistency.run, self_consistency.Config,
                              "N chains, majority vote"),
    "adaptive": Entry(adaptive.run, adaptive.Config,
                      "self-consistency in batches, stops when the vote is decided"),
    "best-of-n": Entry(best_of_n.run, best_of_n.Config,
                       "N chains, scored; best or score-weighted vote", roles=JUDGED),
    "beam": Entry(beam.run, beam.Config, "step-level beam search guided by a step scorer",
                  roles=JUDGED, steps=True),
    "dvts": Entry(dvts.run, dvts.Config,
                  "diverse verifier tree search: n/expansions independent greedy step searches",
                  roles=JUDGED, steps=True),
    "mcts": Entry(mcts.run, mcts.Config,
                  "Monte Carlo tree search over steps (PUCT or UCT), scorer or rollout values",
                  roles=JUDGED, steps=True),
    "tot": Entry(tot.run, tot.Config,
                 "Tree of Thoughts: propose steps, the model values states, BFS or DFS",
                 roles=JUDGED, steps=True, own_scorers=("value",)),
    "refine": Entry(refine.run, refine.Config,
                    "plan, judge, critique and revise the plan, then solve from it",
                    roles=(POLICY, "planner", "judge")),
    "aggregate": Entry(aggregate.run, aggregate.Config,
                       "N chains, scored; the k best merged into one solution", roles=JUDGED),
    "cascade": Entry(cascade.run, cascade.Config, "N cheap answers; escalate to the fallback "
                     "model's scheme when they disagree (Yue et al. 2023)",
                     roles=(POLICY, "fallback")),
    "plan-execute": Entry(plan_execute.run, plan_execute.Config, "the planner writes a plan; "
                          "N executors carry it out; their vote", roles=(POLICY, "planner",
                                                                        "executor")),
    "route": Entry(cascade.run, cascade.RouteConfig, "two direct answers; reason (cot) only "
                   "when they disagree: direct or reasoning", roles=(POLICY, "fallback")),
}


@dataclass(frozen=True)
class Scheme:
    """A scheme from the table with its settings, ready to run on a problem."""

    name: str
    entry: Entry
    config: SchemeConfig

    def __call__(self, problem: Problem, *, model: LanguageModel,
                 roles: Mapping[str, LanguageModel] | None = None,
                 scorer: Scorer | RewardFn | None = None,
                 scorers: Mapping[str, Scorer] | None = None, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None, trace: Trace | None = None) -> Result:
        """Run on `problem` with `model` as the policy and `roles` giving models for other
        roles this scheme asks (`scheme.entry.roles`); `scorer` replaces the scorer its
        settings name (a Scorer, or a TRL-shaped reward function); `scorers` are scorers
        loaded beforehand, by the names a setting may give them; `trace` is the trace the
        run builds, for a caller that reads it as it grows (the server's kept traces)."""
        roles = dict(roles or {})
        self.check_roles(roles)

        def nested(spec: str, problem: Problem, model: LanguageModel) -> Result:
            return get_scheme(spec)(problem, model=model, scorers=scorers,
                                    should_stop=should_stop)

        run = Run({**roles, POLICY: model}, self.config, self.name, scorer=scorer,
                  problem=problem, scorers=dict(scorers or {}), on_text=on_text,
                  should_stop=should_stop, nested=nested,
                  trace=trace if trace is not None else Trace())
        return self.entry.run(problem, run, self.config)

    @property
    def scorer_name(self) -> str | None:
        """The scorer this scheme's settings name, if it scores anything."""
        return self.config.scorer if isinstance(self.config, ScoredConfig) else None

    def check_roles(self, roles: Iterable[str]) -> None:
        """A one-line error for a role that does not exist or that this scheme never asks."""
        for role in roles:
            if role not in ROLES:
                raise UnknownName("role", role, ROLES)
            if role not in self.entry.roles:
                raise ConfigError("model", role, f"scheme {self.name!r} asks models in the "
                                  f"roles {', '.join(self.entry.roles)}; drop {role}= or pick "
                                  "a scheme that uses it")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


def settings(name: str) -> list[Setting]:
    """A scheme's settings, in its config's field order, with defaults and help. The help is
    the comment on the field's line in the nearest config class that declares the field with
    one: the configs document themselves, and a test checks that every setting has a comment."""
    if name not in SCHEMES:
        raise UnknownName("scheme", name, SCHEMES)
    config = SCHEMES[name].config
    return [Setting(f.name, f.default, _comment(config, f.name)) for f in fields(config)]


def _comment(config: type, name: str) -> str:
    line = re.compile(rf"\s+{name}\s*:[^#]*#\s*(.+)")
    for cls in config.__mro__:
        if name in vars(cls).get("__annotations__", {}):
            try:
                source = inspect.getsource(cls)
            except OSError:  # no source shipped (a frozen build): no help, settings still work
                continue
            for text in source.splitlines():
                if match := line.match(text):
                    return match.group(1).strip()
    return ""


def parse_spec(spec: str) -> tuple[str, int | None, dict[str, Any]]:
    """'self-consistency@8:temperature=0.3' -> ('self-consistency', 8, {'temperature': 0.3})."""
    # Split only before `key=`, so values may hold colons: beam@4:scorer=prm:runs/prm/final.
    head, *pairs = re.split(r":(?=[A-Za-z_]\w*=)", spec.strip())
    if ":" in head:  # a setting without a key, "cot:=3" or "cot:3"
        raise ConfigError("scheme", spec, "write settings as name@N:key=value, e.g. "
                          "self-consistency@8:temperature=0.3")
    name, at, count = head.partition("@")
    if at and (not count.isdigit() or int(count) < 1):
        raise ConfigError("scheme", spec, "write name@N with N a positive integer, e.g. "
                          "self-consistency@8")
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError("scheme", spec, "write settings as name@N:key=value, e.g. "
                              "self-consistency@8:temperature=0.3")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return name, int(count) if at else None, settings


def get_scheme(spec: str, **overrides: Any) -> Scheme:
    """A scheme by spec with config overrides (None values are ignored). Settings written in
    the spec win over overrides: the spec is what a results table names."""
    name, n, spec_settings = parse_spec(spec)
    if name not in SCHEMES:
        raise UnknownName("scheme", name, SCHEMES)
    entry = SCHEMES[name]
    valid = {f.name for f in fields(entry.config)}
    settings = {k: v for k, v in overrides.items() if v is not None} | spec_settings
    if n is not None:
        settings["n"] = n
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(unknown[0], settings[unknown[0]],
                          f"scheme {name!r} takes {', '.join(sorted(valid))}")
    if entry.single and settings.get("n", 1) != 1:
        raise ConfigError("n", settings["n"], f"{name} samples once; use self-consistency@N")
    defaults = {f.name: f.default for f in fields(entry.config)}
    for key, value in settings.items():
        settings[key] = _typed(key, value, defaults[key])
    config = entry.config(**settings)
    if isinstance(config, cascade.Config):  # the next rung's scheme, checked now, not mid-run
        try:
            get_scheme(config.then)
        except (ConfigError, UnknownName) as e:
            raise ConfigError("then", config.then, str(e)) from None
    return Scheme(name, entry, config)


def _typed(key: str, value: Any, default: Any) -> Any:
    """Check a setting against its default's type (JSON gives 1e3 for n, "x" for batch)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, float):
        ok, kind = is_int or isinstance(value, float), "a number"
        value = float(value) if ok else value
    elif isinstance(default, int) or default is None:  # counts, seeds, budgets
        ok, kind = is_int or (default is None and value is None), "an integer"
    else:
        ok, kind = isinstance(value, type(default)), f"a {type(default).__name__}"
    if not ok:
        raise ConfigError(key, value, f"use {kind}")
    return value
