"""Secrets out of what nerflow records and prints (nerflow.redact, docs/cli.md "Secrets"): the patterns, and the
edges that use them without a run: data errors, the printed error line, log records, a masked config rerun."""
from __future__ import annotations

import base64
import logging
import random

import pytest
from mlflow.exceptions import MlflowException

from nerflow import redact
from nerflow.config import ConfigError, load_config
from nerflow.data import DataError
from nerflow.flows import errors

SECRET = "s3cr3t-Value-42xyz"


@pytest.mark.parametrize("said, shown", [
    (f"http://alice:{SECRET}@mlflow.example:5000/api", "http://alice:***@mlflow.example:5000/api"),
    (f"postgresql://mlflow:p@ss{SECRET}@db/mlflow", "postgresql://mlflow:***@db/mlflow"),   # `@` in the password
    (f"https://{SECRET}@github.com/org/repo.git", "https://***@github.com/org/repo.git"),   # a token as the user
    (f"override data.api_token={SECRET}: config key does not exist", "override data.api_token=***: config key does "
                                                                     "not exist"),
    (f"{{'password': '{SECRET}', 'user': 'bob'}}", "{'password': '***', 'user': 'bob'}"),
    (f"GET /data?x=1&apiKey={SECRET}&y=2", "GET /data?x=1&apiKey=***&y=2"),
    (f"https://hub.example/f.txt?token={SECRET}", "https://hub.example/f.txt?token=***"),
    (f"Authorization: Bearer {SECRET}", "Authorization: *** ***"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----", "-----*** PRIVATE KEY-----"),
])
def test_patterns_mask_the_secret(said, shown):
    assert redact.text(said, []) == shown


@pytest.mark.parametrize("said", [
    "train.max_tokens=1000 TOKENIZERS_PARALLELISM=false label_all_subtokens: true",
    "basic statistics, auth via the server; https://huggingface.co/bert-base-cased",
    "sqlite:////tmp/mlruns/mlflow.db http://127.0.0.1:5000/#/experiments/1",
    '{"rule": "token_not_blank", "token": "Berlin", "tag": "B-LOC"}',   # NER data: a token is a word
])
def test_ordinary_words_and_uris_are_left_alone(said):
    assert redact.text(said, []) == said


def test_environment_secrets_are_masked_wherever_they_appear_but_short_values_are_not():
    environ = {"HF_TOKEN": SECRET, "MY_SERVICE_PASSWORD": "hunter2-long", "PREFECT_API_AUTH_STRING": "admin:pw-9876",
               "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1", "DATABASE_URL": "postgresql://u:db-pass-1234@h/x",
               "TOKENIZERS_PARALLELISM": "false", "PWD": "/home/someone/project"}
    secrets = redact.env_secrets(environ)
    assert set(secrets) == {SECRET, "hunter2-long", "admin:pw-9876", "db-pass-1234"}
    said = f"loaded {SECRET}, then hunter2-long and db-pass-1234 in /home/someone/project with 1 worker"
    assert redact.text(said, secrets) == "loaded ***, then *** and *** in /home/someone/project with 1 worker"


def test_a_config_is_masked_by_key_and_by_value():
    cfg = {"data": {"hf_dataset": f"https://bob:{SECRET}@hub.example/d", "train": "train.txt"},
           "hub": {"apiKey": SECRET, "token": None}, "train.master_addr": "10.0.0.1", "labels": ["PER", "LOC"]}
    assert redact.mapping(cfg) == {"data": {"hf_dataset": "https://bob:***@hub.example/d", "train": "train.txt"},
                                   "hub": {"apiKey": "***", "token": None}, "train.master_addr": "10.0.0.1",
                                   "labels": ["PER", "LOC"]}


def test_an_excerpt_is_short_printable_and_never_key_material():
    assert redact.excerpt("Paris B-LOC extra") == "'Paris B-LOC extra'"
    assert redact.excerpt("a\x1b[31mb\x00" + "c" * 60) == "'a\\x1b[31mb\\x00" + "c" * 32 + "'... (28 more characters)"
    line = base64.b64encode(random.Random(1).randbytes(52)).decode()
    assert redact.excerpt(line) == "(one 72-character word, not shown: it looks like key material)"


def private_key(path, seed: int = 7) -> list[str]:
    """A file shaped like ~/.ssh/id_rsa: a PEM header, 70-character base64 lines, a footer."""
    body = base64.b64encode(random.Random(seed).randbytes(52 * 20)).decode()
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    path.write_text("\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"])
                    + "\n")
    return lines


def assert_no_piece_of(secret_lines: list[str], said: str, piece: int = 12) -> None:
    for line in secret_lines:
        pieces = {line[i:i + piece] for i in range(len(line) - piece + 1)}
        assert not [p for p in pieces if p in said], said


@pytest.mark.parametrize("task, extra, reader", [("token-classification", "data.format=conll", "nerflow.ner.data"),
                                                 ("text-classification", "data.format=csv", "nerflow.textcat.data")])
def test_an_override_pointing_at_a_key_file_does_not_echo_it(tmp_path, task, extra, reader):
    import importlib

    lines = private_key(tmp_path / "id_rsa")
    env_file = tmp_path / "team.env"   # a file of secrets with spaces in its lines: they look like columns
    env_file.write_text(f"AWS_SECRET_ACCESS_KEY = {lines[0][:40]}\nHF_TOKEN = {lines[1][:40]}\n"
                        f"export DB_PASSWORD={lines[2][:30]}\n")
    (tmp_path / "run.yaml").write_text(f"task: {task}\nmodel:\n  name_or_path: tiny\n")
    for target in ("id_rsa", "team.env"):
        cfg = load_config(tmp_path / "run.yaml", [extra, f"data.dir={tmp_path}", f"data.train={target}"])
        with pytest.raises(DataError) as e:
            importlib.import_module(reader).load_corpus(cfg.data)
        said = errors.message(e.value, errors.classify(e.value))
        assert said.startswith(f"error: {tmp_path / target}:") and len(said) < 300, said
        assert_no_piece_of(lines, said)


def test_an_unreachable_tracking_server_is_named_without_its_password(monkeypatch):
    uri = f"http://alice:{SECRET}@127.0.0.1:9"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    exc = MlflowException(f"API request to {uri}/api/2.0/x failed with exception HTTPConnectionPool: Max retries "
                          "exceeded ([Errno 111] Connection refused)")
    said = errors.message(exc, errors.classify(exc))
    assert said.splitlines()[0] == "error: cannot reach the MLflow tracking server at http://alice:***@127.0.0.1:9: " \
                                   "connection refused"
    try:
        raise RuntimeError(f"a bug while talking to {uri}")
    except RuntimeError as bug:
        assert SECRET not in errors.format_bug(bug)


def test_a_mistyped_secret_override_is_refused_without_printing_the_secret(tmp_path):
    (tmp_path / "run.yaml").write_text("task: token-classification\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "run.yaml", [f"data.api_token={SECRET}"])
    said = errors.message(e.value, errors.classify(e.value))
    assert said.startswith("error: override data.api_token=***") and SECRET not in said, said


def test_log_records_are_masked_where_they_are_made(monkeypatch, tmp_path):
    from nerflow.flows.console import redact_logs

    monkeypatch.setenv("NERFLOW_TEST_TOKEN", SECRET)
    factory = logging.getLogRecordFactory()
    path = tmp_path / "run.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("nerflow.test_redact")
    log.addHandler(handler)
    try:
        redact_logs()
        log.warning("connecting to %s with %s", "https://bob:pw-12345678@host/x", SECRET)
        try:
            raise ValueError(f"the server refused token {SECRET}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
        handler.close()
        logging.setLogRecordFactory(factory)
    written = path.read_text()
    assert "https://bob:***@host/x with ***" in written and "ValueError: the server refused token ***" in written
    assert SECRET not in written and "pw-12345678" not in written


def test_rerun_of_a_config_logged_with_a_masked_secret_is_refused(tmp_path):
    from nerflow.flows.past_run import refuse_masked

    path = tmp_path / "resolved.yaml"
    path.write_text("task: token-classification\ndata:\n  hf_dataset: https://bob:***@hub.example/d\n")
    with pytest.raises(ConfigError, match=r"run abc: its logged config has a secret masked in data\.hf_dataset"):
        refuse_masked("abc", str(path))
    path.write_text("task: token-classification\ndata:\n  hf_dataset: conll2003\n")
    refuse_masked("abc", str(path))
