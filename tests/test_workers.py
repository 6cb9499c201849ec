"""Several workers on one study: exact trial counts, a killed worker's trial retried, Ctrl-C, the SQLite guard.

The multi-process tests run real `latencysolver` processes on a tiny model.  The PostgreSQL ones need the
server `.ci/postgres.sh` starts (`postgres_url` fixture); CI requires it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from latencysolver.config.study import load_study_config
from latencysolver.results.records import trial_record
from latencysolver.search.workers import count_trials
from tests.conftest import add_sibling_trial, write_study_yaml

CHEAP = {"distillation": {"steps": 1, "batch_size": 8}, "latency": {"rows": 2, "warmup": 1, "repeats": 1, "threads": 1}}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """``latencysolver ARGS`` as a child that a Ctrl-C reaches, however this suite was started.

    A shell starts background jobs (``make test &``, ``nohup ... &``) with SIGINT ignored, and a child inherits
    an ignored signal: Python in it would never raise KeyboardInterrupt and the Ctrl-C test would hang.  A
    *handled* signal is reset to its default at exec, so the ignore is swapped for a handler while spawning.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "latencysolver", *args],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **kwargs,
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"still running after {timeout} s; its output:\n{out[-3000:]}") from None
    return out


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=url)


def assert_consistent(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1  # unique and dense
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert count_trials(study).finished == n_trials


def wait_for_running(url: str, timeout: float = 120, *, with_attr: str | None = None) -> int:
    """The number of the first RUNNING trial; with ``with_attr``, one that has set that user attribute."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            running = [
                t
                for t in load(url).get_trials()
                if t.state == TrialState.RUNNING and (with_attr is None or with_attr in t.user_attrs)
            ]
        except KeyError:  # the study is not created yet
            running = []
        if running:
            return running[0].number
        time.sleep(0.3)
    raise AssertionError("no trial started running")


@pytest.mark.slow  # worker processes each loading torch: 35-70 s alone on 2 cores
def test_two_local_workers_on_sqlite_warn_and_finish_exactly(tmp_path, tiny_model_dir, synthetic_data_dir):
    path = write_study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir, n_trials=6, **CHEAP)
    out = finish(cli("run", str(path), "--workers", "2", "--no-progress", "--cache-dir", str(tmp_path / "cache")))
    assert "warning: 2 processes on one SQLite file" in out and "PostgreSQL" in out
    assert "starting 2 local workers" in out
    assert_consistent(load(load_study_config(path).storage), 6)


@pytest.mark.slow  # worker processes each loading torch: 35-70 s alone on 2 cores
def test_three_workers_on_postgresql_run_exactly_60_trials(postgres_url, tmp_path, tiny_model_dir, synthetic_data_dir):
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        synthetic_data_dir,
        n_trials=60,
        storage=postgres_url,
        artifacts=str(tmp_path / "artifacts"),
        **CHEAP,
    )
    out = finish(
        cli("run", str(path), "--workers", "3", "--no-progress", "--cache-dir", str(tmp_path / "cache")), timeout=600
    )
    assert "starting 3 local workers" in out and "SQLite" not in out
    study = load(postgres_url)
    assert_consistent(study, 60)
    assert len(study.get_trials()) == 60
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials()), out[-2000:]
    assert len({t.datetime_start for t in study.get_trials()}) == 60


@pytest.mark.slow  # worker processes each loading torch: 35-70 s alone on 2 cores
def test_a_killed_workers_trial_is_retried_with_the_same_params(
    postgres_url, tmp_path, tiny_model_dir, synthetic_data_dir
):
    slow = {
        "distillation": {"steps": 400, "batch_size": 8},  # long enough to be killed mid-trial
        "early_stop": {"after": None},
        "latency": CHEAP["latency"],
        "workers": {"heartbeat_interval": 1, "grace_period": 3, "max_retry": 1},
    }
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        synthetic_data_dir,
        n_trials=2,
        storage=postgres_url,
        artifacts=str(tmp_path / "artifacts"),
        **slow,
    )
    cache = str(tmp_path / "cache")
    first = cli("run", str(path), "--no-progress", "--cache-dir", cache)
    # killed once every knob is suggested ("recipe" is set right after): a worker killed between two suggestions
    # leaves a trial with only some params, and the retry samples the rest afresh (seen once on a slow CPU)
    wait_for_running(postgres_url, with_attr="recipe")
    first.send_signal(signal.SIGKILL)
    first.wait()
    running = [t.number for t in load(postgres_url).get_trials() if t.state == TrialState.RUNNING]
    assert len(running) == 1  # nobody told the storage
    killed = running[0]

    out = finish(cli("worker", "--study", "tiny", "--storage", postgres_url, "--no-progress", "--cache-dir", cache))
    study = load(postgres_url)
    trials = study.get_trials()
    assert trials[killed].state == TrialState.FAIL
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, out[-2000:]
    assert retries[0].params == trials[killed].params
    assert_consistent(study, 2)


def test_ctrl_c_fails_the_running_trial_and_exits_cleanly(postgres_url, tmp_path, tiny_model_dir, synthetic_data_dir):
    # far more steps than the test waits for: Ctrl-C lands mid-distillation, not between two trials
    slow = {
        "distillation": {"steps": 20000, "batch_size": 8},
        "early_stop": {"after": None},
        "latency": CHEAP["latency"],
    }
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        synthetic_data_dir,
        n_trials=3,
        storage=postgres_url,
        artifacts=str(tmp_path / "artifacts"),
        **slow,
    )
    process = cli("run", str(path), "--no-progress", "--cache-dir", str(tmp_path / "cache"))
    wait_for_running(postgres_url)
    process.send_signal(signal.SIGINT)
    out = finish(process, timeout=60)
    failed = [t for t in load(postgres_url).get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 1, out[-2000:]
    number = failed[0].number
    assert process.returncode == 130, out[-2000:]
    assert "latencysolver: interrupted" in out and "Traceback" not in out
    trials = load(postgres_url).get_trials()
    assert trials[number].state == TrialState.FAIL
    assert "interrupted" in trial_record(trials[number]).fail_reason
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_worker_refuses_a_study_that_run_did_not_create(tmp_path, capsys):
    from latencysolver.cli import main

    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="foreign", storage=url)
    assert main(["worker", "--study", "foreign", "--storage", url]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("latencysolver: error: study 'foreign'")
    assert "latencysolver run" in err


def test_worker_on_missing_study_is_one_line(tmp_path, capsys):
    from latencysolver.cli import main

    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["worker", "--study", "nope", "--storage", url]) == 1
    assert "no such database file" in capsys.readouterr().err
    assert not Path(tmp_path / "none.db").exists()


def test_a_worker_on_a_confirm_study_whose_repeats_were_interrupted_says_what_to_run(study_yaml, tmp_path, capsys):
    """Every missing repeat interrupted, none queued: the worker said "working towards 4", ran nothing, exited 0.
    A made-up sibling study (no trial is run): the refusal comes before any teacher or data is prepared."""
    import hashlib

    from latencysolver.cli import main
    from latencysolver.config.study import config_to_dict
    from latencysolver.results.records import StudyRecord, write_study_record
    from latencysolver.results.repeats import repeat_seed

    config = load_study_config(study_yaml())
    sibling = optuna.create_study(study_name="tiny:confirm", storage=config.storage, directions=["maximize"] * 2)
    write_study_record(sibling, StudyRecord(config={**config_to_dict(config), "n_trials": 4}, repeats_of="tiny"))
    for number, k, state in (
        (0, 1, TrialState.COMPLETE),
        (0, 2, TrialState.FAIL),
        (1, 1, TrialState.FAIL),
        (1, 2, TrialState.FAIL),
    ):
        attrs = {"repeat_of": number, "seed": repeat_seed(number, k)}
        add_sibling_trial(sibling, state, attrs, interrupted=state == TrialState.FAIL)
    db = Path(tmp_path / "study.db")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    capsys.readouterr()
    args = ["worker", "--study", "tiny:confirm", "--storage", config.storage, "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--no-progress"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.strip().splitlines() if not line.startswith("warning:")]
    assert errors == [
        "latencysolver: error: --study 'tiny:confirm': 3 of its 4 seed repeats were interrupted and none is queued, "
        "so a worker has nothing to run; `latencysolver confirm --study 'tiny' --trials 0,1 --seeds 2` (with this "
        "--storage) queues them again and runs them, and then workers can join"
    ], captured.err
    assert "working towards" not in captured.out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (tmp_path / "cache").exists()


def test_a_worker_elsewhere_copies_the_teacher_instead_of_fine_tuning(
    tmp_path, tiny_model_dir, synthetic_data_dir, capsys
):
    """Another machine: the recorded teacher folder is not on its disk, and its cache is empty."""
    import shutil

    from latencysolver.cli import main

    path = write_study_yaml(tmp_path, tiny_model_dir, synthetic_data_dir, n_trials=2, **CHEAP)
    here, elsewhere = tmp_path / "cache-here", tmp_path / "cache-elsewhere"
    assert main(["run", str(path), "--trials", "1", "--cache-dir", str(here), "--no-progress"]) == 0
    shutil.rmtree(here)  # the teacher folder the study recorded is gone, as on another machine
    capsys.readouterr()
    url = load_study_config(path).storage
    assert main(["worker", "--study", "tiny", "--storage", url, "--cache-dir", str(elsewhere), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "copied from the study's artifact store" in out and "fine-tuning" not in out
    (copied,) = [p for p in (elsewhere / "teachers").iterdir() if p.is_dir()]
    assert (copied / "teacher.json").is_file() and (copied / "model.safetensors").is_file()
    assert count_trials(load(url)).finished == 1  # the study's target (run --trials 1) was already met


def test_spawned_workers_get_the_storage_url_outside_their_command_line(capfd):
    """Issue 16: `run --workers N` put the storage URL, password included, on the workers' command line (`ps`)."""
    from latencysolver.cli import STORAGE_ENV
    from latencysolver.search.workers import spawn_workers

    url = "postgresql+psycopg://u:secretpw@127.0.0.1:1/db?password=secretpw"
    (proc,) = spawn_workers(1, "tiny", url, ["--no-progress"])
    try:
        argv: list[bytes] = []
        for _ in range(100):  # what `ps` shows; read until it is there (a process being set up shows nothing)
            argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            if b"worker" in argv:
                break
            time.sleep(0.05)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    finally:
        code = proc.wait(timeout=120)
    assert b"worker" in argv and not any(b"secretpw" in arg for arg in argv), argv
    assert f"{STORAGE_ENV}={url}".encode() in environ
    err = capfd.readouterr().err  # the worker reached for that storage, and did not print the password either
    assert code == 1 and "cannot connect" in err and "127.0.0.1:1" in err and "secretpw" not in err, err


def test_ctrl_c_while_asking_fails_the_new_trial(tmp_path, monkeypatch):
    # The window the subprocess test above rarely hits: the signal lands after ask() has stored the trial as
    # RUNNING but before the worker holds it.  Without the deferral the trial would stay RUNNING.
    from latencysolver.config.study import WorkersConfig
    from latencysolver.search.workers import open_storage, work

    storage = open_storage(f"sqlite:///{tmp_path / 'ask.db'}", WorkersConfig())
    study = optuna.create_study(study_name="ask", storage=storage)
    real_ask = study.ask

    def ask_then_ctrl_c(*args, **kwargs):
        trial = real_ask(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return trial

    monkeypatch.setattr(study, "ask", ask_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    ran = []
    with pytest.raises(KeyboardInterrupt):
        work(study, storage, lambda trial: ran.append(trial.number) or 1.0, n_trials=3)
    assert ran == []  # the objective never started
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert "interrupted" in trial_record(trials[0]).fail_reason
    assert signal.getsignal(signal.SIGINT) == before  # the worker's handler is gone again


def test_a_stale_last_trial_is_failed_and_retried_before_the_count(study_yaml, tmp_path, monkeypatch):
    # n_trials 1 and trial 0's worker killed mid-trial: the count must not take the dead RUNNING trial as "taken"
    import latencysolver.search.run as run_module
    from latencysolver.search.preparation import RunOptions

    def killed_mid_trial(study, storage, objective, n_trials, **kwargs):
        with pytest.warns(UserWarning, match="Heartbeat"):
            study.ask()  # RUNNING, with a heartbeat, and then the worker dies (kill -9): nobody tells the storage
        storage.record_heartbeat(
            storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), 0)
        )
        return 1

    config = load_study_config(
        study_yaml(n_trials=1, workers={"heartbeat_interval": 1, "grace_period": 2, "max_retry": 1}, **CHEAP)
    )
    options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "work", killed_mid_trial)
        run_module.run_study(config, options, log=lambda _: None)
    assert [t.state for t in load(config.storage).get_trials()] == [TrialState.RUNNING]
    time.sleep(3)  # past the grace period
    lines: list[str] = []
    run_module.run_study(config, options, log=lines.append)
    trials = load(config.storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], lines
    assert not [line for line in lines if "nothing to run" in line]
    assert_consistent(load(config.storage), 1)


def test_sigterm_fails_the_running_trial_and_exits_143(postgres_url, tmp_path, tiny_model_dir, synthetic_data_dir):
    slow = {
        "distillation": {"steps": 20000, "batch_size": 8},  # SIGTERM lands mid-distillation
        "early_stop": {"after": None},
        "latency": CHEAP["latency"],
    }
    path = write_study_yaml(
        tmp_path,
        tiny_model_dir,
        synthetic_data_dir,
        n_trials=3,
        storage=postgres_url,
        artifacts=str(tmp_path / "artifacts"),
        **slow,
    )
    process = cli("run", str(path), "--no-progress", "--cache-dir", str(tmp_path / "cache"))
    wait_for_running(postgres_url)
    process.send_signal(signal.SIGTERM)
    out = finish(process, timeout=60)
    assert process.returncode == 143, out[-2000:]
    assert "latencysolver: terminated" in out and "Traceback" not in out
    trials = load(postgres_url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL], out[-2000:]
    assert trial_record(trials[0]).fail_reason.startswith("interrupted (SIGTERM)")


def test_sigterm_inside_the_connection_pool_waits_until_it_is_left():
    """A SIGTERM that lands in SQLAlchemy's pool code is sent again shortly after instead of raising there (where
    the pool would log the interrupt's traceback); outside it, it raises ``Terminated`` as always."""
    from latencysolver.search.workers import Terminated, sigterm_as_interrupt

    # a function whose code runs as module sqlalchemy.pool.fake: the signal arrives while it runs
    namespace = {"__name__": "sqlalchemy.pool.fake", "os": os, "signal": signal}
    exec("def give_back():\n    os.kill(os.getpid(), signal.SIGTERM)\n    return 'returned'\n", namespace)
    finished = []
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        finished.append(namespace["give_back"]())
        time.sleep(5)  # the signal comes again within 50 ms and raises here
    assert finished == ["returned"]
    with sigterm_as_interrupt(), pytest.raises(Terminated):  # elsewhere: at once
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
