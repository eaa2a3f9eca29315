"""The champion gate on a real sqlite registry with tiny local models: every move scored as served, recorded in the
registry's history, reversible, and serialised across processes."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from mlflow import MlflowClient

from nerflow import history
from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_REFUSED
from nerflow.model_files import MODEL_HASH_TAG

from .corpus import tiny_config
from .processes import nerflow_env

WEAK = ["train.epochs=2"]             # far from the corpus: F1 well below STRONG's
STRONG = ["train.epochs=25"]
GATE = ["promote.min_f1=0.0", "promote.min_support=1"]   # a tiny test split: every type counts, no floor


def pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name: str, *extra: str) -> dict:
    from nerflow.flows.pipeline import pipeline

    cfg_dir = tmp_path / f"cfg-{len(list(tmp_path.glob('cfg-*')))}"
    cfg_dir.mkdir()
    cfg = tiny_config(cfg_dir, tiny_corpus, corpus_model_dir, cache_dir, f"registry.model_name={name}",
                      "experiment=nerflow-promotion", *GATE, *extra)
    return pipeline(cfg)


def champion_of(name: str) -> str | None:
    return MlflowClient().get_registered_model(name).aliases.get("champion")


def entries(name: str) -> list[history.Entry]:
    return history.decode_all(MlflowClient().get_registered_model(name).tags, "champion")


def reason_of(name: str, version: str) -> str:
    return MlflowClient().get_model_version(name, version).tags["nerflow.reason"]


def assert_terminal_decision(said, caplog, verdict: str, reason: str) -> None:
    """`nerflow promote` on a terminal: an aligned table (no Markdown), the compared figures, and the reason once
    (on stdout when accepted, in the one error line when rejected; not in the log too)."""
    table, figures = said.out.split("\n\n")[:2]
    assert "|" not in said.out and "**" not in said.out and "---" not in said.out
    header, *rows = table.split("\n")
    assert header.split()[:2] == ["type", "support"] and {r.split()[0] for r in rows} >= {"PER", "LOC", "ORG"}
    support_ends = header.index("support") + len("support")   # numbers end under their header, whatever the type
    assert all(re.match(r"\S+ +\d+", r).end() == support_ends for r in rows), table
    assert figures.startswith("Micro F1: challenger ")
    assert (said.out + said.err).count(reason) == 1, (said.out, said.err)
    assert not [r for r in caplog.records if r.name == "nerflow.promote" and reason in r.getMessage()]
    if verdict == "accepted":
        assert said.out.rstrip().endswith(f"accepted: {reason}") and said.err == ""
    else:
        assert said.err.startswith("error: ") and said.err.count("\n") == 1
    caplog.clear()


def description(name: str) -> str:
    return MlflowClient().get_registered_model(name).description or ""


def history_rows(name: str) -> list[list[str]]:
    """(version, decision) of each row of the description's champion history table, as written."""
    section = description(name).split("## Champion history", 1)[1]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in section.splitlines()
             if re.match(r"\| (v\d+|—) \|", line)]
    return [[c[0], c[3]] for c in cells]


def test_first_champion_then_a_better_one_then_a_worse_one_is_rejected(tmp_path, tiny_corpus, corpus_model_dir,
                                                                       cache_dir, mlflow_store):
    name = "gate-a"
    first = pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, *WEAK)
    said = first["promote"].decision
    assert said["decision"] == "accepted" and "no champion yet" in said["reason"]
    assert str(champion_of(name)) == "1"
    better = pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, *STRONG)
    assert better["promote"].decision["accepted"] and better["promote"].decision["moved"]
    assert better["promote"].decision["challenger_f1"] > better["promote"].decision["champion_f1"]
    assert str(champion_of(name)) == "2"
    worse = pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, "train.epochs=3")
    assert not worse["promote"].decision["accepted"] and str(champion_of(name)) == "2"

    client = MlflowClient()
    rejected = client.get_model_version(name, "3")
    assert rejected.tags["nerflow.promotion"] == "rejected"
    assert rejected.tags["nerflow.reason"] == worse["promote"].decision["reason"]
    assert "champion F1" in rejected.tags["nerflow.reason"]
    assert client.get_model_version(name, "2").tags["nerflow.promotion"] == "accepted"
    assert [(e.action, e.from_version, e.to_version) for e in entries(name)] == [("promote", None, "1"),
                                                                                ("promote", "1", "2")]
    evidence = entries(name)[1].evidence
    assert evidence.mlflow_run_id == better.run_id and evidence.test_data_hash and evidence.champion_f1 is not None
    # the evidence is on the run too, and the version carries its model card
    artifacts = {a.path for a in client.list_artifacts(worse.run_id, "promotion")}
    assert artifacts == {"promotion/comparison.json", "promotion/comparison.md"}
    card = client.get_model_version(name, "2").description
    assert card.startswith(f"# {name} version 2") and "| PER |" in card and f"nerflow rerun {better.run_id}" in card
    # the registered model's page: the champion history, newest first, with the gate's scores
    assert history_rows(name) == [["v2", "promoted by the gate"], ["v1", "promoted by the gate"]]
    assert f"| v2 | {entries(name)[1].time.replace('T', ' ')[:16]} |" in description(name)
    assert f"{better['promote'].decision['challenger_f1']:.4f}" in description(name)


def test_auto_off_manual_gate_forced_move_and_rollbacks(tmp_path, tiny_corpus, corpus_model_dir, cache_dir,
                                                        mlflow_store, capsys, caplog, monkeypatch):
    name = "gate-b"
    pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, *WEAK)
    held = pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, *STRONG, "promote.auto=false")
    assert held["promote"].decision["accepted"] and not held["promote"].decision["moved"]
    assert str(champion_of(name)) == "1"                              # the evidence, but no move

    capsys.readouterr()
    caplog.set_level(logging.INFO, logger="nerflow.promote")          # as the CLI's own logging shows it
    caplog.clear()   # the pipelines' promote stages logged their decisions: only the command's own lines count
    scratch = tmp_path / "scratch"   # the commands' temporary folders: what the gate read must not stay behind
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert cli.main(["promote", name, "2", "--actor", "bob"]) == 0      # by hand, through the same gate
    assert str(champion_of(name)) == "2"
    assert_terminal_decision(capsys.readouterr(), caplog, "accepted", reason_of(name, "2"))
    assert cli.main(["promote", name, "1", "--actor", "carol"]) == EXIT_REFUSED     # the gate says no
    assert str(champion_of(name)) == "2"
    assert_terminal_decision(capsys.readouterr(), caplog, "rejected", reason_of(name, "1"))
    left = [p.relative_to(scratch) for p in scratch.rglob("*") if p.name in ("test.jsonl", "resolved.yaml")]
    assert not left, f"a copy of the test split or the version's config left behind: {left}"
    monkeypatch.undo()
    assert cli.main(["promote", name, "1", "--force"]) == EXIT_BAD_INPUT           # no reason given
    assert cli.main(["promote", name, "9"]) == EXIT_BAD_INPUT                      # no such version
    assert cli.main(["promote", "no-such-model", "1"]) == EXIT_BAD_INPUT
    assert cli.main(["rollback", "no-such-model"]) == EXIT_BAD_INPUT
    assert cli.main(["promote", name, "1", "--force", "--reason", "hotfix for ticket 7", "--actor", "alice"]) == 0
    assert str(champion_of(name)) == "1"
    forced = entries(name)[-1]
    assert (forced.action, forced.actor, forced.reason, forced.from_version) == ("force", "alice",
                                                                                 "hotfix for ticket 7", "2")

    assert history_rows(name)[0] == ["v1", "forced"] and "| alice |" in description(name)
    assert cli.main(["rollback", name]) == 0 and str(champion_of(name)) == "2"      # undoes the forced move
    assert cli.main(["rollback", name]) == 0 and str(champion_of(name)) == "1"      # twice: two back
    capsys.readouterr()
    assert cli.main(["rollback", name]) == EXIT_REFUSED and str(champion_of(name)) == "1"
    assert "nothing to roll back to" in capsys.readouterr().err
    assert MlflowClient().get_model_version(name, "2").tags["nerflow.rolled_back"] == "true"
    assert [(e.action, e.from_version, e.to_version) for e in entries(name)] == [
        ("promote", None, "1"), ("promote", "1", "2"), ("force", "2", "1"), ("rollback", "1", "2"),
        ("rollback", "2", "1")]
    # the gate never re-promotes a rolled-back version on its own: nothing scored, no empty table
    assert cli.main(["promote", name, "2"]) == EXIT_REFUSED
    said = capsys.readouterr()
    assert said.out == "nothing compared: the gate decided without scoring\n" and "rolled back" in said.err

    assert cli.main(["models", "history", name, "--json"]) == 0
    assert [r["action"] for r in json.loads(capsys.readouterr().out)][-1] == "rollback"
    # a move made in the MLflow UI is detected at the next move and recorded as such, so that move names it
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", "2")
    assert cli.main(["promote", name, "1", "--force", "--reason", "back after the UI move"]) == 0
    assert [(e.action, e.from_version, e.to_version) for e in entries(name)][-2:] == [("external", "1", "2"),
                                                                                     ("force", "2", "1")]
    # every move is a row, the rollbacks and the UI move included: the page is rendered from the settled history
    assert history_rows(name) == [["v1", "forced"], ["v2", "moved outside nerflow"], ["v1", "rolled back"],
                                  ["v2", "rolled back"], ["v1", "forced"], ["v2", "promoted by the gate"],
                                  ["v1", "promoted by the gate"]]
    # a version of another task type is bad input, and nothing moves
    src = client.get_model_version(name, "1")
    other = client.create_model_version(name, src.source, run_id=src.run_id,
                                        tags={"nerflow.task": "text-classification"}).version
    assert cli.main(["promote", name, str(other)]) == EXIT_BAD_INPUT and str(champion_of(name)) == "1"
    assert cli.main(["promote", name, str(other), "--force", "--reason", "wrong type"]) == EXIT_BAD_INPUT
    assert str(champion_of(name)) == "1"
    capsys.readouterr()

    assert cli.main(["compare", name, "1", "2", "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["f1"]["2"] > compared["f1"]["1"]
    assert {r["type"] for r in compared["rows"]} >= {"PER", "ORG", "LOC"}
    assert compared["only_found_by"]["2"] > 0 and compared["gold_entities"] > 0

    # the registry's tables as text (plain: the output is captured, as in a pipe): a header, one line per row
    for argv, header, count in ((["models", name], ["version", "aliases"], 3),
                                (["models", "history", name], ["#", "time"], len(entries(name)))):
        assert cli.main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:2] == header and len(lines) == 1 + count and "\x1b[" not in "".join(lines), lines


RACER = textwrap.dedent("""
    import contextlib, sys, time
    from pathlib import Path
    from nerflow.prefect_tasks import champion
    barrier, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    real_lock = champion.promotion_lock

    @contextlib.contextmanager
    def overlapping_lock(name, alias):
        (barrier / me).touch()                        # at the lock: about to wait for it
        with real_lock(name, alias):
            # the overlap, forced: whoever holds the lock goes on only once the other is at the lock too
            deadline = time.monotonic() + 180
            while not (barrier / other).exists():
                if time.monotonic() > deadline:       # a failure, never a pass: the overlap did not happen
                    raise SystemExit(f"{other} never reached the promotion lock")
                time.sleep(0.05)
            yield
    champion.promotion_lock = overlapping_lock
    from nerflow.flows.cli import main
    raise SystemExit(main(["promote", sys.argv[4], sys.argv[5], "--actor", me]))
""")


def race(tmp_path: Path, name: str, mlflow_store: str) -> list[history.Entry]:
    """@champion on a weak version 1; versions 2 and 3 are both better (the same weights); two processes promote
    them at once, each held at the lock until the other has reached it."""
    client = MlflowClient()
    sources = {str(v.version): v for v in client.search_model_versions("name='gate-a'")}   # weak 1, strong 2
    client.create_registered_model(name)
    for src in (sources["1"], sources["2"], sources["2"]):   # the same files: the same stored hash
        client.create_model_version(name, src.source, run_id=src.run_id, tags={
            "nerflow.task": "token-classification", MODEL_HASH_TAG: src.tags[MODEL_HASH_TAG]})
    assert cli.main(["promote", name, "1", "--force", "--reason", "start the race from a weak champion"]) == 0
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(barrier), f"racer{v}", f"racer{w}", name, v],
                              cwd=tmp_path, env=nerflow_env(mlflow_store), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for v, w in (("2", "3"), ("3", "2"))]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    # one accepted (exit 0); the other, scored against the winner (the same weights), rejected: a tie (exit 4)
    assert sorted(p.returncode for p in procs) == [0, EXIT_REFUSED], outputs
    for v in ("2", "3"):                                      # both decisions recorded
        assert client.get_model_version(name, v).tags.get("nerflow.promotion") in ("accepted", "rejected"), outputs
    return entries(name)


def consistent(found: list[history.Entry], name: str) -> bool:
    """Each move names the champion it replaced, the alias is where the last move put it, and every accepted
    decision that moved the alias has its entry (two writers without the lock would pick the same entry number)."""
    client = MlflowClient()
    accepted = [v for v in ("2", "3") if client.get_model_version(name, v).tags["nerflow.promotion"] == "accepted"]
    return all(e.from_version == p.to_version for p, e in zip(found, found[1:])) and \
        found[-1].to_version == str(champion_of(name)) and \
        [e.action for e in found].count("promote") == len(accepted)


def test_two_promotions_racing_in_separate_processes_keep_the_history_consistent(tmp_path, mlflow_store, tiny_corpus,
                                                                                 corpus_model_dir, cache_dir):
    """One winner; the other, held at the lock while the winner moved, scores against the new champion (equal
    weights: a tie keeps the champion)."""
    if not MlflowClient().search_model_versions("name='gate-a'"):
        test_first_champion_then_a_better_one_then_a_worse_one_is_rejected(tmp_path, tiny_corpus, corpus_model_dir,
                                                                           cache_dir, mlflow_store)
    found = race(tmp_path, "gate-race", mlflow_store)
    assert consistent(found, "gate-race"), found
    assert [e.action for e in found].count("promote") == 1


def blind_to(tmp_path: Path, tiny_corpus: Path, etype: str, keep) -> Path:
    """The tiny corpus with `etype` unlabelled in train except in one sentence (so it stays in the label set)."""
    from .corpus import LONG, SHORT, write_conll

    d = tmp_path / f"blind-{etype}"
    d.mkdir()
    unlabelled = [[(w, "O" if t.endswith(f"-{etype}") else t) for w, t in s] for s in [LONG, *SHORT]]
    write_conll(d / "train.txt", unlabelled * 4 + [keep])
    for split in ("valid.txt", "test.txt"):
        (d / split).write_bytes((tiny_corpus / split).read_bytes())
    return d


def test_a_per_type_regression_is_rejected_although_overall_f1_is_higher(tmp_path, tiny_corpus, corpus_model_dir,
                                                                          cache_dir, mlflow_store):
    """The champion hardly knows PER but finds the PRODUCT entity; the challenger finds every PER but not the
    PRODUCT (each learnt its blind type from one sentence): better overall, worse on one type."""
    from .corpus import SHORT, UNSEEN

    name = "gate-type-drop"
    # each blind type is kept once, in a sentence whose entity is not in the test split (whose PER entities are
    # Maria Lopez, Anna Schmidt, Pedro Alvarez; its PRODUCT is the Vortex 3000, labelled O 4 times to 1)
    champion = pipeline(tmp_path, blind_to(tmp_path, tiny_corpus, "PER", SHORT[0]), corpus_model_dir, cache_dir,
                        name, *STRONG)
    assert champion["promote"].decision["moved"]
    challenger = pipeline(tmp_path, blind_to(tmp_path, tiny_corpus, "PRODUCT", UNSEEN[3]), corpus_model_dir,
                          cache_dir, name, *STRONG)
    outcome = challenger["promote"].decision
    rows = {r["type"]: r for r in outcome["rows"]}
    assert outcome["challenger_f1"] > outcome["champion_f1"], rows
    assert not outcome["accepted"] and "PRODUCT" in outcome["reason"], rows
    assert rows["PRODUCT"]["flag"] == "type_drop" and rows["PRODUCT"]["delta_f1"] < -0.02
    assert str(champion_of(name)) == str(champion["register"].version)
