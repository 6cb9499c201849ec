"""``latencysolver dashboard``: a real optuna-dashboard server, started on a free 127.0.0.1 port, serves our study,
its trials, objective names, the study note and the trials' artifacts."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from latencysolver.cli import main
from latencysolver.results.dashboard import (
    NOTE_BEGIN,
    NOTE_END,
    ArtifactFolders,
    artifact_folders,
    merged_note,
    study_note,
)
from latencysolver.results.records import study_record, trial_record


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, tiny_study):
    """A copy of the session's finished tiny study (its database; the artifacts stay where it recorded them): the
    dashboard rewrites the notes of the studies it serves, and the session's study is read-only."""
    import dataclasses
    import shutil

    from sqlalchemy.engine import make_url

    config = tiny_study[0]
    db = tmp_path_factory.mktemp("dashboard") / "study.db"
    shutil.copyfile(make_url(config.storage).database, db)
    config = dataclasses.replace(config, storage=f"sqlite:///{db}")
    return config, optuna.load_study(study_name="tiny", storage=config.storage)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def server(finished_study, tmp_path_factory):
    """``latencysolver dashboard`` in a child process; yields its base URL once /api/studies answers."""
    config, _ = finished_study
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "dashboard.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "latencysolver", "dashboard", "--storage", config.storage, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                get(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dashboard did not start (exit {proc.poll()}): {log.read_text()}")
                time.sleep(0.3)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def study_detail(base: str) -> tuple[int, dict]:
    studies = json.loads(get(f"{base}/api/studies"))["study_summaries"]
    assert [s["study_name"] for s in studies] == ["tiny"]
    study_id = studies[0]["study_id"]
    return study_id, json.loads(get(f"{base}/api/studies/{study_id}"))


def test_server_lists_the_study_its_trials_and_objective_names(server, finished_study):
    base, log = server
    _, study = finished_study
    _, detail = study_detail(base)
    assert detail["objective_names"] == ["accuracy", "speedup"]
    assert detail["directions"] == ["maximize", "maximize"]
    assert sorted(t["number"] for t in detail["trials"]) == [t.number for t in study.trials]
    by_number = {t["number"]: t for t in detail["trials"]}
    for trial in study.trials:
        assert by_number[trial.number]["values"] == pytest.approx(trial.values)
    assert "127.0.0.1" in log.read_text() and "notes refreshed" in log.read_text()


def test_the_note_has_teacher_baseline_hardware_and_data(server, finished_study):
    base, _ = server
    _, study = finished_study
    _, detail = study_detail(base)
    body = detail["note"]["body"]
    record = study_record(study)
    teacher, data, first = record.teacher, record.data, trial_record(study.trials[0])
    assert f"{teacher.accuracy:.3f}" in body and f"{teacher.latency_p50_ms:.2f} ms" in body
    assert first.hardware_key in body
    assert first.hardware["cpu_model"] in body
    assert data.source in body and f"{data.train_rows} train / {data.validation_rows} validation" in body
    assert "speed-up vs fp32 teacher" in body


def test_artifact_download_returns_the_trials_recipe_and_samples(server, finished_study):
    base, _ = server
    _, study = finished_study
    study_id, detail = study_detail(base)
    for served in detail["trials"]:
        trial = study.trials[served["number"]]
        files = {a["filename"]: a["artifact_id"] for a in served["artifacts"]}
        assert {"student.json", "latency_samples.json", "model.safetensors"} <= set(files)
        url = f"{base}/artifacts/{study_id}/{served['trial_id']}"
        student = json.loads(get(f"{url}/{files['student.json']}"))
        assert student["recipe"] == trial_record(trial).recipe_dict
        samples = json.loads(get(f"{url}/{files['latency_samples.json']}"))
        assert samples["speedup"] == pytest.approx(trial_record(trial).speedup)
        assert len(samples["model"]["samples_ms"]) == len(samples["reference"]["samples_ms"]) > 0


def test_run_writes_the_note_without_the_dashboard(finished_study):
    from optuna_dashboard import get_note

    config, _ = finished_study
    study = optuna.load_study(study_name="tiny", storage=config.storage)
    stored = get_note(study)
    assert stored == merged_note("", study_note(study))  # our part of the note, between its markers
    assert "Teacher baseline" in stored and "no trial yet" not in stored


def test_artifacts_are_read_from_whichever_recorded_folder_has_them(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "0123-abcd").write_bytes(b"weights")
    store = ArtifactFolders((first, second))
    with store.open_reader("0123-abcd") as fh:
        assert fh.read() == b"weights"
    with pytest.raises(optuna.artifacts.exceptions.ArtifactNotFound):
        store.open_reader("ffff-0000")
    store.write("4567-ef01", io.BytesIO(b"new"))
    assert (first / "4567-ef01").read_bytes() == b"new"


def test_artifact_folders_of_a_storage(finished_study, tmp_path):
    config, study = finished_study
    assert artifact_folders(config.storage).folders == (Path(study_record(study).artifact_dir),)
    assert artifact_folders(config.storage, str(tmp_path)).folders == (tmp_path,)


@pytest.mark.parametrize(
    "extra, expected", [([], "no such database file"), (["--artifacts", "/nonexistent/artifacts"], "--artifacts")]
)
def test_dashboard_bad_input_is_one_line(finished_study, tmp_path, capsys, extra, expected):
    config, _ = finished_study
    storage = f"sqlite:///{tmp_path / 'missing.db'}" if not extra else config.storage
    assert main(["dashboard", "--storage", storage, *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latencysolver: error:") and expected in err[0]
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    "address, expected",
    [
        (["--port", "0"], "--port"),
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--port", "BUSY"], "cannot listen"),
        (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid'"),
    ],
    ids=["port-0", "port-too-big", "port-negative", "port-busy", "host-unresolvable"],
)
def test_dashboard_bad_address_is_one_line_and_writes_nothing(
    finished_study, tmp_path, capsys, monkeypatch, address, expected
):
    """Issue 16: a bad or busy port, or a host that does not resolve, gave a traceback after every study's note in
    the storage had been rewritten.  The address is checked first; the storage file stays byte for byte the same."""
    import hashlib
    import shutil

    from sqlalchemy.engine import make_url

    config, _ = finished_study
    db = tmp_path / "copy.db"
    shutil.copyfile(make_url(config.storage).database, db)
    before = hashlib.md5(db.read_bytes()).hexdigest()
    served = []  # a server that starts would block this test; record it instead
    monkeypatch.setattr("latencysolver.results.dashboard.serve", lambda *args: served.append(args))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = [str(busy.getsockname()[1]) if a == "BUSY" else a for a in address]
        assert main(["dashboard", "--storage", f"sqlite:///{db}", *address]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latencysolver: error:") and expected in err[0], captured.err
    assert "Traceback" not in captured.err and "optuna-dashboard on" not in captured.out
    assert hashlib.md5(db.read_bytes()).hexdigest() == before and served == []


def test_dashboard_writes_notes_only_on_its_own_studies_and_keeps_other_peoples(finished_study, tmp_path, monkeypatch):
    """A plain Optuna study's note, and a note a person rewrote on a study of ours, stay as they were; a study of
    ours with an empty note gets ours, and text a person added around our part of a note is kept."""
    import shutil

    from optuna_dashboard import get_note, save_note
    from sqlalchemy.engine import make_url

    config, _ = finished_study
    db = tmp_path / "copy.db"
    shutil.copyfile(make_url(config.storage).database, db)
    storage = f"sqlite:///{db}"
    plain = optuna.create_study(study_name="plain", storage=storage)
    save_note(plain, "## my experiment\n\nlearning rate sweep, do not delete\n")
    optuna.create_study(study_name="plain-empty", storage=storage)
    tiny = optuna.load_study(study_name="tiny", storage=storage)
    monkeypatch.setattr("latencysolver.results.dashboard.serve", lambda *args: None)

    assert main(["dashboard", "--storage", storage, "--port", str(free_port())]) == 0
    assert get_note(optuna.load_study(study_name="plain", storage=storage)) == (
        "## my experiment\n\nlearning rate sweep, do not delete\n"
    )
    assert get_note(optuna.load_study(study_name="plain-empty", storage=storage)) == ""
    ours = get_note(tiny)
    assert study_note(tiny) in ours

    # a person adds a line below our part: the next refresh rewrites our part and keeps theirs
    save_note(tiny, ours + "\nmy remark: trial 1 looks odd\n")
    assert main(["dashboard", "--storage", storage, "--port", str(free_port())]) == 0
    kept = get_note(tiny)
    assert study_note(tiny) in kept and kept.endswith("\nmy remark: trial 1 looks odd\n")
    assert kept.count("latencysolver study `tiny`") == 1

    # a person replaces the whole note: it is theirs now, and stays
    save_note(tiny, "my own summary of tiny\n")
    assert main(["dashboard", "--storage", storage, "--port", str(free_port())]) == 0
    assert get_note(tiny) == "my own summary of tiny\n"


def test_a_note_from_before_the_markers_is_ours_and_others_are_not():
    ours = "## latencysolver study `tiny`\n\nnew figures\n"
    part = merged_note("", ours)
    assert part is not None and part.startswith(NOTE_BEGIN) and part.rstrip().endswith(NOTE_END) and ours in part
    assert merged_note("## latencysolver study `tiny`\n\nold figures\n", ours) == part  # written by an older run
    assert merged_note("before\n\n" + part + "\nafter\n", ours.replace("new", "newer")) == (
        "before\n\n" + part.replace("new", "newer") + "\nafter\n"
    )
    assert merged_note("mine\n", ours) is None
    assert merged_note(f"mine\n\n{NOTE_END}\n\n{NOTE_BEGIN}\n", ours) is None  # no part of ours between them


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncated", "is not an Optuna SQLite database (database disk image is malformed)"),
        ("not-a-database", "is not an Optuna SQLite database (file is not a database)"),
        ("empty", "is an empty file: no studies to show"),
        ("other-tables", "is a SQLite database without Optuna's tables"),
    ],
    ids=["truncated", "not-a-database", "empty", "other-tables"],
)
def test_a_damaged_empty_or_foreign_database_is_refused_unchanged(tmp_path, capsys, monkeypatch, damage, expected):
    """A truncated file or one that is no database gave a 78-line traceback; an empty file got Optuna's schema
    written into it and was served.  Each is one line now, before anything is written or served."""
    import hashlib
    import sqlite3

    db = tmp_path / "study.db"
    if damage == "truncated":
        study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", directions=["maximize", "maximize"])
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=20)
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    elif damage == "not-a-database":
        db.write_text("not a database " * 20)
    elif damage == "empty":
        db.touch()
    else:
        with sqlite3.connect(db) as other:
            other.execute("CREATE TABLE notes (text TEXT)")
        other.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    served = []
    monkeypatch.setattr("latencysolver.results.dashboard.serve", lambda *args: served.append(args))
    capsys.readouterr()
    assert main(["dashboard", "--storage", f"sqlite:///{db}", "--port", str(free_port())]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latencysolver: error: --storage") and expected in err[0], captured.err
    assert str(db) in err[0]
    assert served == [] and "optuna-dashboard on" not in captured.out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
