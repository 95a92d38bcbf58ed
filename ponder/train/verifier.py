"""`ponder train verifier`: an outcome verifier learned from the policy's own sampled chains.

The chains come from `ponder eval` results files (resumable, so sampling k chains per training
question is an ordinary eval run on the train split):

    ponder eval gsm8k --split train --limit 200 --schemes self-consistency@8 -o runs/train.db
    ponder train verifier runs/train.db --out runs/verifier.json
    ponder solve "..." --scheme best-of-n@8:scorer=verifier:runs/verifier.json

Every stored row of a chain-sampling scheme (self-consistency, adaptive, best-of-n) with two or
more chains is one question's pool; pools repeated across rows (best-of-n sharing
self-consistency's samples) are read once. Each chain is labelled by the task's own check of
its answer against the row's gold; its features (ponder/scorers/verifier.py) include its
agreement with the other chains of its pool. The model is a logistic regression on
standardised features, fitted by full-batch gradient descent with an L2 penalty on the
weights: six features and a few thousand chains need nothing more (numpy only).

Only train-split results are read unless told otherwise (`any_split`): a verifier fitted on the
questions it is then measured on would report its own training set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ponder.core.errors import ConfigError, DataError
from ponder.core.files import check_writable
from ponder.core.types import Trace
from ponder.eval.runner import task_of
from ponder.eval.store import Store
from ponder.scorers.verifier import FEATURES, Chain, Verifier, features

CHAIN_SCHEMES = ("self-consistency", "adaptive", "best-of-n")  # traces of whole sampled chains


@dataclass
class Pool:
    """One question's sampled chains, labelled: 1 where the chain's answer is right."""

    question_id: str
    chains: list[Chain]
    labels: list[int]


def read_pools(path: Path, *, any_split: bool = False) -> list[Pool]:
    """The labelled chain pools of one results file."""
    with Store.read(path) as store:
        meta = store.meta()
        if meta.get("split") != "train" and not any_split:
            raise ConfigError("store", str(path), f"it holds {meta.get('split')!r}-split "
                              "results; train on the train split (ponder eval TASK --split "
                              "train ...), or pass --any-split to use it anyway")
        task = task_of(meta)
        pools, seen = [], set()
        for row in store.rows(traces=True):
            trace = Trace.from_dict(json.loads(row.trace))
            nodes = sorted((n for n in trace.nodes if n.parent is None and not n.is_step),
                           key=lambda n: n.id)
            signature = (row.question_id, tuple(n.text for n in nodes))
            if trace.scheme not in CHAIN_SCHEMES or len(nodes) < 2 or signature in seen:
                continue
            seen.add(signature)
            chains = [Chain(n.text, n.answer, None if n.answer is None else task.key(n.answer),
                            n.tokens) for n in nodes]
            labels = [int(n.answer is not None and task.check(n.answer, row.gold))
                      for n in nodes]
            pools.append(Pool(row.question_id, chains, labels))
    return pools


def design(pools: Sequence[Pool]) -> tuple[np.ndarray, np.ndarray]:
    """Features (chains × FEATURES) and labels of every chain of the pools."""
    rows = [row for pool in pools for row in features(pool.chains)]
    labels = [label for pool in pools for label in pool.labels]
    return np.array(rows, dtype=float).reshape(-1, len(FEATURES)), np.array(labels, dtype=float)


def fit(x: np.ndarray, y: np.ndarray, *, l2: float = 0.01, steps: int = 2000,
        lr: float = 0.5) -> Verifier:
    """Logistic regression by gradient descent on the mean log-loss + l2/2 · |w|² (the bias is
    not penalised), features standardised by their training mean and std."""
    means = x.mean(axis=0)
    stds = x.std(axis=0)
    stds[stds == 0] = 1.0  # a constant feature: its weight stays at 0
    z = (x - means) / stds
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (p - y) / len(y) + l2 * w)
        b -= lr * float(np.mean(p - y))
    return Verifier(weights=w.tolist(), bias=b, means=means.tolist(), stds=stds.tolist())


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """The probability that a random right chain outscores a random wrong one (ties count a
    half): the Mann-Whitney U over its maximum. None where one class is missing."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for value in np.unique(s):  # tied scores share their mean rank
        tied = s == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_verifier(stores: Sequence[Path], out: Path, *, any_split: bool = False,
                   l2: float = 0.01, steps: int = 2000,
                   say: Callable[[str], None] = lambda line: None) -> Verifier:
    """Read the stores' pools, fit, save to `out` with the training stats, and return it."""
    if l2 < 0:
        raise ConfigError("l2", l2, "use 0 or a positive penalty, e.g. 0.01")
    if steps < 1:
        raise ConfigError("steps", steps, "use a positive number of gradient steps")
    check_writable(out, "--out")
    pools = [pool for path in stores for pool in read_pools(path, any_split=any_split)]
    x, y = design(pools)
    say(f"{len(y)} chains of {len(pools)} questions ({int(y.sum())} right) from "
        f"{len(stores)} file(s)")
    if len(set(y.tolist())) < 2:
        raise DataError(f"{len(y)} chains, {int(y.sum())} of them right: a verifier needs "
                        "right and wrong chains to learn from; sample more questions or chains "
                        "(self-consistency@8 rows of `ponder eval --split train`)")
    verifier = fit(x, y, l2=l2, steps=steps)
    train_scores = verifier.probabilities(x.tolist())
    verifier.stats = {
        "stores": [str(p) for p in stores], "questions": len(pools), "chains": len(y),
        "right": int(y.sum()), "l2": l2, "steps": steps,
        "train_auroc": auroc(train_scores, y.astype(int).tolist()),
        "train_accuracy": float(np.mean((np.array(train_scores) >= 0.5) == y)),
    }
    verifier.save(out)
    return verifier
