"""nerflow signals only a process it can prove it started (nerflow.processes: pid, start time, command line).

Real processes and real signals: a temporary Prefect server's record whose pid now belongs to an unrelated process
(the normal case after a kill -9: the server died with its owner, the kernel handed the pid on) is removed and that
process lives on; an orphaned server that is still the one recorded is stopped. The team servers' state
(infra/team.py) is held to the same proof."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nerflow.flows import prefect_server
from nerflow.processes import ProcessId, owned, signal_if_owned

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int, timeout: float = 10.0) -> bool:
    """The process ended (a zombie that no one reaps counts as ended) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen]:
    """An unrelated live process: the one that got a dead server's pid."""
    proc = subprocess.Popen(["sleep", "60"])
    ProcessId.after_exec(proc.pid)   # Popen returns before the kernel has set up the new command line
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def servers(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    folder = prefect_server.servers_dir()
    folder.mkdir(parents=True)
    return folder


def server_cmdline(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--port", str(port)]


def test_ids_match_only_the_very_process(bystander, dead_pid):
    me = ProcessId.of(bystander.pid)
    assert me is not None and me.cmdline == ("sleep", "60") and owned(me)
    assert ProcessId.from_json(json.loads(json.dumps(me.to_json()))) == me
    assert not owned(ProcessId(me.pid, me.started - 3600, me.cmdline))        # the pid reused since
    assert not owned(ProcessId(me.pid, me.started, ("sleep", "61")))          # another command
    assert not owned(ProcessId(dead_pid, me.started, me.cmdline)) and ProcessId.of(dead_pid) is None
    assert ProcessId.from_json({"pid": 1}) is None and not owned(None)     # a record without start time proves nothing
    assert not signal_if_owned(ProcessId(me.pid, me.started - 3600, me.cmdline))
    assert bystander.poll() is None
    assert signal_if_owned(me)
    assert bystander.wait(timeout=10) == -15


@pytest.mark.parametrize("record", ["reused pid", "record without identities"])
def test_a_stale_server_record_is_removed_and_whoever_has_its_pid_now_is_not_signalled(record, servers, bystander,
                                                                                      dead_pid):
    now = ProcessId.of(bystander.pid)
    info = {"pid": bystander.pid, "owner": dead_pid, "port": 4200, "started": now.started - 3600}
    if record == "reused pid":   # the server started an hour ago under this pid; its owner is dead
        info |= {"server": ProcessId(bystander.pid, now.started - 3600, tuple(server_cmdline(4200))).to_json(),
                 "owner_process": ProcessId(dead_pid, now.started - 3600, ("nerflow", "run")).to_json()}
    pidfile = servers / f"{bystander.pid}.json"
    pidfile.write_text(json.dumps(info))

    assert prefect_server.stop_orphans() == []
    time.sleep(0.2)                       # a signal sent would have landed by now
    assert bystander.poll() is None       # still running
    assert not pidfile.exists()


def test_an_orphaned_server_that_is_still_the_one_recorded_is_stopped(servers, tmp_path):
    # The owner (a stand-in for `nerflow run`) starts its "server" in a session of its own and records it with
    # prefect_server.write_record, exactly as prefect_api does, then exits without stopping it (as after kill -9).
    script = ("import subprocess, sys\nfrom pathlib import Path\n"
              "from nerflow.flows.prefect_server import write_record\n"
              "p = subprocess.Popen(['sleep', '60'], start_new_session=True, stdout=subprocess.DEVNULL,\n"
              "                     stderr=subprocess.DEVNULL)\n"
              "write_record(Path(sys.argv[1]) / f'{p.pid}.json', p, 4200)\nprint(p.pid)\n")
    owner = subprocess.run([sys.executable, "-c", script, str(servers)], capture_output=True, text=True, timeout=60)
    assert owner.returncode == 0, owner.stderr
    pid = int(owner.stdout)
    try:
        record = json.loads((servers / f"{pid}.json").read_text())
        assert record["server"]["cmdline"] == ["sleep", "60"] and record["owner_process"]["pid"] == record["owner"]
        assert prefect_server.stop_orphans() == [pid]
        assert gone(pid)
        assert list(servers.iterdir()) == []
    finally:
        if not gone(pid, timeout=0):
            psutil.Process(pid).kill()


def test_a_live_owners_server_is_left_alone(servers):
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        prefect_server.write_record(servers / f"{proc.pid}.json", proc, 4200)   # owner: this live process
        assert prefect_server.stop_orphans() == []
        assert proc.poll() is None and (servers / f"{proc.pid}.json").exists()
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------- infra/team.py's servers
def team_module():
    """infra/ is no package: load infra/team.py by path (as tests/team/conftest.py does)."""
    name = "nerflow_team_servers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "infra" / "team.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture
def lookalike() -> Iterator[subprocess.Popen]:
    """A live process whose command line names the server and its port (another `mlflow server --port 5000` that
    got the pid of ours after a reboot), but that this state did not start."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mlflow", "--port", "5000"],
                            start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("state", ["reused pid", "state without identities"])
def test_team_down_signals_no_process_it_did_not_start(state, lookalike, tmp_path, capsys):
    now = ProcessId.of(lookalike.pid)
    saved = {"host": "127.0.0.1", "ports": {"mlflow": 5000}, "pids": {"mlflow": lookalike.pid}}
    if state == "reused pid":
        saved["procs"] = {"mlflow": ProcessId(lookalike.pid, now.started - 3600, now.cmdline).to_json()}
    (tmp_path / "state.json").write_text(json.dumps(saved))

    team_module().TeamServers(tmp_path).down()
    time.sleep(0.2)
    assert lookalike.poll() is None
    assert json.loads((tmp_path / "state.json").read_text())["pids"] == {}
    if state == "state without identities":
        assert f"not stopping mlflow (pid {lookalike.pid})" in capsys.readouterr().err


def test_team_down_stops_the_server_it_started(tmp_path):
    team = team_module().TeamServers(tmp_path)
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)   # its own group, as _spawn starts a server
    try:
        team.state = {"host": "127.0.0.1", "ports": {"mlflow": 5000}, "pids": {"mlflow": proc.pid}}
        team._remember("mlflow", proc.pid)
        team.down()
        assert proc.wait(timeout=15) == -15
    finally:
        proc.kill()
        proc.wait()


def test_a_wall_clock_step_leaves_a_live_process_recognised(bystander, monkeypatch):
    """psutil's create_time() adds /proc/stat's boot time, which the kernel recomputes when the clock is set (a VM
    resumed from a snapshot, NTP stepping the date): compared as such, a live server looked like another process."""
    recorded = ProcessId.of(bystander.pid)
    real_boot_time = psutil._pslinux.boot_time
    monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: real_boot_time() + 3600)   # the clock set an hour on
    assert abs(psutil.Process(bystander.pid).create_time() - recorded.started) > 3000   # what psutil now reports
    assert owned(recorded) and ProcessId.from_json(json.loads(json.dumps(recorded.to_json()))) == recorded
    pid, started, cmdline = recorded.pid, recorded.started, recorded.cmdline
    assert not owned(ProcessId(pid, started, cmdline, recorded.boot, recorded.start_tick + 1))   # a reused pid
    assert not owned(ProcessId(pid, started, cmdline, "another-boot", recorded.start_tick))      # after a reboot
    assert signal_if_owned(recorded)
    assert bystander.wait(timeout=15) == -15


def test_team_stops_the_whole_group_of_a_server_it_started_whatever_its_record_says(tmp_path):
    """The servers this TeamServers started are its unreaped children: their group is stopped even when the state's
    identity no longer matches (it did not after a clock step, and only the leader was killed: `mlflow server`'s
    uvicorn child kept the port)."""
    team = team_module().TeamServers(tmp_path)
    child = tmp_path / "child.pid"
    server = ("import pathlib, subprocess, sys, time; c = subprocess.Popen(['sleep', '60']); "
              "pathlib.Path(sys.argv[1]).write_text(str(c.pid)); time.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", server, str(child)], start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not child.exists() or not child.read_text():
            assert time.monotonic() < deadline, "the server's child did not start"
            time.sleep(0.05)
        now = ProcessId.of(leader.pid)
        team.procs["mlflow"] = leader
        team.state = {"host": "127.0.0.1", "ports": {"mlflow": 5000}, "pids": {"mlflow": leader.pid},
                      "procs": {"mlflow": ProcessId(leader.pid, now.started - 3600, now.cmdline).to_json()}}
        team._stop("mlflow", kill=True)
        assert leader.returncode == -9 and gone(int(child.read_text()))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, 9)
        leader.wait()


def test_the_temporary_servers_start_up_wait_is_90_s_outside_the_project_unless_configured(tmp_path):
    """A command run outside the project reads no prefect.toml: Prefect's own 20 s was too short on busy cores."""
    probe = ("from nerflow.flows.prefect_server import startup_timeout; print(startup_timeout())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_EPHEMERAL")}
    default = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert default.stdout.strip() == "90.0", default.stderr
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "33"
    told = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert told.stdout.strip() == "33.0", told.stderr
