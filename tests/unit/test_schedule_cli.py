"""`nerflow schedule` refuses bad input before it talks to any server: exit 2 and one line naming the option."""
from __future__ import annotations

import pytest

from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
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
