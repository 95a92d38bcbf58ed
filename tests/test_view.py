"""The trace viewer without a browser (issue 27): the page it writes, what it reads (trace
files, kept-trace bodies, results stores), `ponder view` and `ponder report --html`, and the
server's kept traces (registry, snapshots under concurrent writes, routes, key, 404s). The
browser draws them in tests/test_view_browser.py."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.problem import Problem
from ponder.core.types import Trace
from ponder.eval.runner import EvalConfig, run_eval
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme
from ponder.serve.app import create_app
from ponder.serve.traces import KeptTraces, snapshot
from ponder.tasks import get_task
from ponder.verifiers import extract_answer
from ponder.view.page import ASSETS, Panel, page
from ponder.view.sources import file_panels, load_panels, rights

runner = CliRunner()
PROBLEM = Problem(question="q", messages=({"role": "user", "content": "q"},),
                  extract=extract_answer)
STEPS = "Add them.\n\nThen halve it.\n\nSo \\boxed{42}."


def beam_trace() -> Trace:
    """A beam search on the fake: 3 levels of steps, the last answering 42."""
    return get_scheme("beam@2:expansions=2:scorer=uniform")(
        PROBLEM, model=ScriptedModel([STEPS])).trace


def page_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="ponder-data" type="application/json">(.*?)</script>', html,
                      re.S)
    assert found is not None
    return dict(json.loads(found[1]))


# -- the page --------------------------------------------------------------------------------


def test_the_page_is_self_contained_and_carries_the_trace() -> None:
    trace = beam_trace()
    html = page([Panel(trace, "beam", gold="42")], "t")
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from the network
    assert "<script src" not in html and "Copyright 2010-2026 Mike Bostock" in html  # licence
    assert "Permission to use, copy, modify" in html
    data = page_data(html)
    assert data["panels"][0]["trace"] == json.loads(json.dumps(trace.to_dict()))
    assert data["panels"][0]["gold"] == "42" and data["live"] is None


def test_model_text_cannot_end_the_script_and_odd_numbers_are_valid_json() -> None:
    trace = Trace(scheme="cot")
    trace.add("</script><script>alert(1)</script><!-- \u2028", score=math.nan,
              value=-math.inf)
    html = page([Panel(trace)], "</title><b>x")
    assert html.count("</script>") == 3  # the data, d3-hierarchy, viewer.js: none from the text
    assert "<b>x" not in html
    node = page_data(html)["panels"][0]["trace"]["nodes"][0]
    assert node["text"].startswith("</script>") and node["score"] == "nan"
    assert node["value"] == "-inf"


def test_linked_assets_are_written_once_beside_the_pages(tmp_path: Path) -> None:
    from ponder.view.page import write_assets

    write_assets(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ASSETS)
    html = page([Panel(beam_trace())], "t", assets="", back=("../r.html", "back"))
    assert '<script src="viewer.js">' in html and 'href="../r.html"' in html
    assert "Mike Bostock" not in html


# -- what it reads ---------------------------------------------------------------------------


def test_nodes_are_marked_right_or_wrong_against_the_gold() -> None:
    trace = Trace()
    for answer in ("42", "41", None, "42.0"):
        trace.add("x", answer=answer)
    assert rights(trace, "42", get_task("gsm8k").check) == {0: True, 1: False, 3: True}
    assert rights(trace, None, get_task("gsm8k").check) == {}


def test_a_kept_trace_body_is_one_panel_per_choice(tmp_path: Path) -> None:
    body = {"id": "x", "question": "q?", "traces": [beam_trace().to_dict()] * 2}
    (tmp_path / "kept.json").write_text(json.dumps(body))
    panels = file_panels(tmp_path / "kept.json")
    assert [p.label for p in panels] == ["kept.json · choice 0", "kept.json · choice 1"]
    assert panels[0].question == "q?"


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gsm8k on the fake (it answers 42): questions 0 and 2 right; cot and beam, 2 seeds."""
    tmp = tmp_path_factory.mktemp("store")
    data = tmp / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}?", "answer": f"#### {g}"}) + "\n"
                            for i, g in enumerate(["42", "4", "42"])))
    run_eval(EvalConfig(task="gsm8k", schemes=("cot", "beam@2:scorer=uniform"),
                        out=tmp / "run.db", model="fake", data=data, seeds=2,
                        model_args={"script": [STEPS]}))
    return tmp / "run.db"


def test_a_store_gives_a_panel_per_scheme_and_seed_of_a_question(run_db: Path) -> None:
    panels = load_panels([run_db], question="gsm8k-1")
    assert [p.label for p in panels] == ["beam@2:scorer=uniform · seed 0",
                                         "beam@2:scorer=uniform · seed 1", "cot"]
    assert all(p.gold == "4" and p.correct is False for p in panels)
    assert set(panels[0].right.values()) == {False}  # every node's 42 is wrong here
    by_position = load_panels([run_db], question="2", schemes=["cot"])
    assert [(p.label, p.correct) for p in by_position] == [("cot", True)]


@pytest.mark.parametrize(("args", "message"), [
    (["{db}"], "is a results store: name one of its questions"),
    (["{db}", "--question", "nope"], "holds no question 'nope'; its questions include gsm8k-0"),
    (["{db}", "--question", "1", "--scheme", "mcts"], "unknown scheme 'mcts'"),
    (["{trace}", "--question", "1"], "invalid --question='1'"),
    (["{trace}", "--gold", "4", "--checker", "fuzzy"], "unknown checker 'fuzzy'"),
    (["missing.json"], "does not exist"),
])
def test_view_mistakes_are_one_line(run_db: Path, tmp_path: Path, args: list[str],
                                    message: str) -> None:
    (tmp_path / "t.json").write_text(json.dumps(beam_trace().to_dict()))
    args = [a.format(db=run_db, trace=tmp_path / "t.json") for a in args]
    result = runner.invoke(app, ["view", *args, "--out", str(tmp_path / "o.html")])
    assert result.exit_code != 0
    assert isinstance(result.exception, (SystemExit, Exception))
    assert message in str(result.exception), result.exception
    assert not (tmp_path / "o.html").exists()


def test_view_writes_two_traces_side_by_side(tmp_path: Path) -> None:
    beam = tmp_path / "beam.json"
    beam.write_text(json.dumps(beam_trace().to_dict()))
    sc = get_scheme("self-consistency@3")(PROBLEM, model=ScriptedModel([STEPS])).trace
    (tmp_path / "sc.json").write_text(json.dumps({"trace": sc.to_dict(), "answer": "42"}))
    result = runner.invoke(app, ["view", str(beam), str(tmp_path / "sc.json"), "--gold", "42",
                                 "--out", str(tmp_path / "o.html")])
    assert result.exit_code == 0, result.output
    data = page_data((tmp_path / "o.html").read_text())
    assert [p["label"] for p in data["panels"]] == ["beam.json", "sc.json"]
    assert set(data["panels"][1]["right"].values()) == {True}
    assert "<title>beam.json vs sc.json</title>" in (tmp_path / "o.html").read_text()


def test_report_html_links_every_question_to_its_traces(run_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(run_db), "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "data:image/png;base64," in html and "Wilson score interval" in html
    assert re.findall(r'href="(report_traces/q\d+\.html)"', html) == [
        "report_traces/q0.html", "report_traces/q1.html", "report_traces/q2.html"]
    assert sorted(p.name for p in (tmp_path / "report_traces").iterdir()) == sorted(
        [*ASSETS, "q0.html", "q1.html", "q2.html"])
    question = (tmp_path / "report_traces" / "q1.html").read_text()
    labels = [p["label"] for p in page_data(question)["panels"]]
    assert labels == ["cot", "beam@2:scorer=uniform · seed 0", "beam@2:scorer=uniform · seed 1"]
    assert 'href="../report.html"' in question


# -- the server's kept traces ----------------------------------------------------------------


def test_the_registry_keeps_the_newest_n() -> None:
    kept = KeptTraces(2)
    for i in range(3):
        kept.open(f"id{i}", "fake", "beam", None, 1)
    assert kept.get("id0") is None and [k.id for k in kept.newest_first()] == ["id2", "id1"]


def test_a_snapshot_is_whole_while_another_thread_adds_nodes() -> None:
    trace, done = Trace(), threading.Event()

    def grow() -> None:
        for i in range(3000):
            node = trace.add(f"step {i}", i - 1 if i else None, meta={"k": i})
            node.meta.update({f"x{j}": j for j in range(5)})
            trace.meta[f"m{i % 50}"] = i
        done.set()

    writer = threading.Thread(target=grow)
    writer.start()
    sizes = []
    while not done.is_set():
        copy = snapshot(trace)
        sizes.append(len(copy["nodes"]))
        assert [n["id"] for n in copy["nodes"]] == list(range(len(copy["nodes"])))
    writer.join()
    assert sizes == sorted(sizes) and len(snapshot(trace)["nodes"]) == 3000


KEY = {"Authorization": "Bearer sekrit"}
ASK = {"model": "fake", "messages": [{"role": "user", "content": "6 * 7?"}],
       "ponder": {"scheme": "beam@2:expansions=2:scorer=uniform"}}


@pytest.fixture
def client() -> Iterator[TestClient]:
    server = create_app({"fake": ScriptedModel([STEPS])}, get_task("math").problem,
                        api_key="sekrit", keep_traces=2)
    with TestClient(server, raise_server_exceptions=False) as c:
        yield c


def test_a_kept_request_is_read_as_json_and_drawn(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json=ASK, headers=KEY).json()
    id = reply["ponder"]["trace_id"]
    assert id == reply["id"]
    body = client.get(f"/v1/traces/{id}", headers=KEY).json()
    assert body["status"] == "done" and body["question"] == "6 * 7?"
    assert body["scheme"] == "beam" and len(body["traces"]) == 1
    assert len(body["traces"][0]["nodes"]) == body["nodes"] > 3 and body["traces"][0]["chosen"]
    html = client.get(f"/view/{id}?key=sekrit")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert page_data(html.text)["live"] == {"url": f"/v1/traces/{id}", "every_ms": 500}
    listed = client.get("/v1/traces", headers=KEY).json()["data"]
    assert [k["id"] for k in listed] == [id]


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/traces/{id}", "/view/{id}",
                                  "/view/{id}?key=wrong"])
def test_traces_are_behind_the_key(client: TestClient, path: str) -> None:
    id = client.post("/v1/chat/completions", json=ASK, headers=KEY).json()["id"]
    r = client.get(path.format(id=id))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_unknown_evicted_and_unkept_ids_are_404(client: TestClient) -> None:
    ids = [client.post("/v1/chat/completions", json=ASK, headers=KEY).json()["id"]
           for _ in range(3)]
    for path in (f"/v1/traces/{ids[0]}", "/v1/traces/nope", "/view/nope?key=sekrit"):
        r = client.get(path, headers=KEY)
        assert r.status_code == 404 and r.json()["error"]["code"] == "trace_not_found"
    assert client.get(f"/v1/traces/{ids[2]}", headers=KEY).status_code == 200
    plain = create_app({"fake": ScriptedModel([STEPS])}, get_task("math").problem)
    with TestClient(plain) as c:
        reply = c.post("/v1/chat/completions", json=ASK).json()
        assert "trace_id" not in reply["ponder"]
        r = c.get(f"/v1/traces/{reply['id']}")
        assert r.status_code == 404 and "--keep-traces" in r.json()["error"]["message"]


def test_a_stream_names_its_trace_in_its_first_chunk(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True},
                       headers=KEY) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: {")]
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["ponder"] == {"trace_id": first["id"]}
    assert client.get(f"/v1/traces/{first['id']}", headers=KEY).json()["status"] == "done"


def test_a_kept_run_answers_as_an_unkept_one(client: TestClient) -> None:
    """The kept path builds the run itself (to hand it the kept trace): same reply, usage."""
    plain = create_app({"fake": ScriptedModel([STEPS])}, get_task("math").problem)
    ask = {**ASK, "n": 2, "seed": 3}
    with TestClient(plain) as c:
        alone = c.post("/v1/chat/completions", json=ask).json()
    kept = client.post("/v1/chat/completions", json=ask, headers=KEY).json()
    assert kept["choices"] == alone["choices"] and kept["usage"] == alone["usage"]
    for key in ("answers", "chains_run", "model_calls", "by_role"):
        if key == "by_role":
            for part in (*kept["ponder"][key], *alone["ponder"][key]):
                part.pop("model_seconds")
        assert kept["ponder"][key] == alone["ponder"][key]
    traces = client.get(f"/v1/traces/{kept['id']}", headers=KEY).json()["traces"]
    assert len(traces) == 2 and all(t["chosen"] for t in traces)
