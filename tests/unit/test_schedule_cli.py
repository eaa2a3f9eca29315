"""`nerflow schedule` refuses bad input before it talks to any server: exit 2 and one line naming the option."""
from __future__ import annotations

import pytest

from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)   # a schedule's config lies inside its working directory (what a worker checks)
    path = tmp_path / "c.yaml"
    path.write_text("data: {dir: data}\n")
    return str(path)


@pytest.mark.parametrize("args, said", [
    ([], "a schedule needs --cron EXPR or --interval SECONDS"),
    (["--cron", "61 * * * *"], "--cron '61 * * * *': Invalid cron string"),
    (["--cron", "0 3 * * *", "--timezone", "Mars/Olympus"], "--timezone 'Mars/Olympus': Invalid timezone"),
    (["--interval", "0"], "--interval 0: must be a positive number of seconds"),
    (["train.epocs=1", "--interval", "60"], "train.epocs"),
])
def test_bad_schedules_are_refused_with_one_line(cfg, args, said, capsys):
    assert cli.main(["schedule", cfg, *args]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err, err


def test_a_good_schedule_without_a_server_says_how_to_start_one(cfg, capsys):
    assert cli.main(["schedule", cfg, "--interval", "60"]) == EXIT_UNAVAILABLE
    assert "make team-up" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, said", [
    (["model.name_or_path=someone/bert-ner"], "'someone/bert-ner' is a hub model without a pinned commit"),
    (["model.name_or_path=someone/bert-ner", "model.revision=main"], "set model.revision to a 40-character commit"),
    (["data.format=hf", "data.hf_dataset=someone/corpus"], "'someone/corpus' is a hub dataset without a pinned "
                                                           "commit: a schedule would train on whatever the hub holds"),
])
def test_an_unpinned_hub_id_in_a_schedule_is_refused(cfg, overrides, said, capsys):
    """The hub cannot be reached here: the refusal must not need it (and it comes before any server is asked)."""
    assert cli.main(["schedule", cfg, *overrides, "--interval", "60"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and err.count("\n") == 1, err


def test_a_hub_model_pinned_to_a_commit_may_be_scheduled(cfg, capsys):
    pinned = "model.revision=" + "0123456789abcdef" * 2 + "01234567"
    assert cli.main(["schedule", cfg, "model.name_or_path=someone/bert-ner", pinned, "--interval", "60"]) == \
        EXIT_UNAVAILABLE                                        # refused only for want of a server
    assert "make team-up" in capsys.readouterr().err


@pytest.mark.parametrize("args, said", [
    (["data.train=/etc/passwd"], "deployment parameter overrides: data.train='/etc/passwd' is outside the working "
                                 "directory"),
    (["--workdir", "/usr"], "deployment parameter config:"),   # the config is not inside that workdir
])
def test_a_schedule_a_worker_would_refuse_is_refused_now(cfg, args, said, capsys):
    assert cli.main(["schedule", cfg, *args, "--interval", "60"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and err.count("\n") == 1, err


@pytest.mark.parametrize("args, said", [
    (["--monitor", "../elsewhere"], "deployment parameter input: '../elsewhere' is not a plain path"),
    (["--monitor", "/etc"], "deployment parameter input: '/etc' resolves to /etc, outside"),
    (["--monitor", "captured", "--model", "runs:/abc/model"], "deployment parameter model: 'runs:/abc/model' is not "
                                                              "a registered model's URI"),
    (["--monitor", "captured", "--model", "/srv/models/ner"], "deployment parameter model: '/srv/models/ner'"),
    (["--monitor", "captured", "--collision", "cancel_new"], "--collision cancel_new with --monitor"),
    (["--model", "models:/m@champion"], "--model goes with --monitor"),
    (["--monitor"], "--monitor without INPUT checks the capture folder of NERFLOW_CAPTURE_DIR, which is not set"),
])
def test_a_drift_check_a_worker_would_refuse_is_refused_now(cfg, args, said, capsys, monkeypatch):
    """`schedule --monitor`: the monitoring deployment's parameters are checked as a worker checks them, before
    any server is asked (exit 2, one line)."""
    monkeypatch.delenv("NERFLOW_CAPTURE_DIR", raising=False)
    monkeypatch.delenv("NERFLOW_WORKDIR_ROOTS", raising=False)
    assert cli.main(["schedule", cfg, *args, "--interval", "60"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and err.count("\n") == 1, err


def test_a_good_drift_check_without_a_server_says_how_to_start_one(cfg, capsys, monkeypatch, tmp_path):
    """The capture folder by default, and one outside the checkout when the roots include it."""
    outside = tmp_path.parent / "capture-root"
    monkeypatch.setenv("NERFLOW_CAPTURE_DIR", str(outside / "ner"))
    monkeypatch.setenv("NERFLOW_WORKDIR_ROOTS", str(outside))
    assert cli.main(["schedule", cfg, "--monitor", "--interval", "60"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert "make team-up" in err and f"warning: {outside / 'ner'} does not exist yet" in err, err
