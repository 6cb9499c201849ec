"""Issue 16 item 14: every path latencysolver writes, under a file, read-only, and on a full disk.

Each row is one output path: ``export --out``, ``report --out``, ``predict --output``, ``run --cache-dir``, the
study's ``artifacts:`` folder, and the SQLite file's folder.  Each condition must give exit code 1, one
``latencysolver: error:`` line naming the path and the operating system's reason, no traceback, and nothing
half-written there.

* under a file: in this process, through ``latencysolver.cli.main``;
* read-only: a child process in its own mount namespace where the folder is a read-only tmpfs (root ignores file
  modes, not a read-only mount); as a non-root user, a ``chmod 555`` folder instead;
* full disk: the folder is a small tmpfs in the child's mount namespace, listed from inside it after the command
  (the tmpfs goes with the namespace); without mount namespaces, a file-size limit (``RLIMIT_FSIZE``) makes every
  write past 256 KiB fail instead.

The children are forked from a multiprocessing fork server that imported the command line's modules once, and run
``main(ARGS)`` with their own stdout, stderr, working folder and environment: a fresh ``python -m latencysolver``
spent 8-10 s of CPU importing torch, transformers and optuna for each of 14 children.  What a shell sees of a real
``python -m latencysolver`` process (its exit codes, nothing but the error on stderr) is tests/test_exit_codes.py's.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import resource
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latencysolver.cli import main
from tests.conftest import write_study_yaml

ERROR = "latencysolver: error: "
FULL_SIZE = "256k"  # the tmpfs: room for the small cache files, not for a teacher, an export or a report


def _can_mount() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt && umount /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


MOUNTS = os.geteuid() == 0 and _can_mount()


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model_dir, synthetic_data_dir):
    """A tiny finished study (1 trial) and its export: what export, report and predict read."""
    root = tmp_path_factory.mktemp("outputs")
    os.chmod(root, 0o777)  # the non-root fallback makes folders inside it
    path = write_study_yaml(root, tiny_model_dir, synthetic_data_dir, n_trials=1)
    common = ["--cache-dir", str(root / "cache"), "--no-progress"]
    assert main(["run", str(path), *common]) == 0
    storage = f"sqlite:///{root / 'study.db'}"
    assert main(["export", "--study", "tiny", "--storage", storage, "--trial", "0", "--out", str(root / "exp")]) == 0
    rows = [json.loads(line) for line in (synthetic_data_dir / "validation.jsonl").read_text().splitlines()]
    # 3,600 rows: ~320 KB of predictions, more than the full tmpfs or the file-size limit (256 KiB) lets through
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 150))
    return {"root": root, "yaml": path, "storage": storage, "model": tiny_model_dir, "data": synthetic_data_dir}


def command(kind: str, study: dict, target: Path, scratch: Path) -> list[str]:
    """The CLI arguments that write ``target`` (a path inside the folder under test)."""
    storage = study["storage"]
    if kind == "export --out":
        return ["export", "--study", "tiny", "--storage", storage, "--trial", "0", "--out", str(target / "exp")]
    if kind == "report --out":
        return ["report", "--study", "tiny", "--storage", storage, "--out", str(target / "r.html")]
    if kind == "predict --output":
        out = str(target / "p.jsonl")
        return ["predict", str(study["root"] / "exp"), "--input", str(study["root"] / "rows.jsonl"), "--output", out]
    fresh = write_study_yaml(scratch, study["model"], study["data"], n_trials=1)  # a new study: nothing cached
    run = ["run", str(fresh), "--no-progress"]
    if kind == "run --cache-dir":
        return [*run, "--cache-dir", str(target / "cache")]
    cache = ["--cache-dir", str(scratch / "cache")]
    if kind == "artifacts: folder":
        config = yaml.safe_load(fresh.read_text())
        fresh.write_text(yaml.safe_dump({**config, "artifacts": str(target / "art")}))
        return [*run, *cache]
    assert kind == "storage folder"
    return [*run, *cache, "--storage", f"sqlite:///{target / 's.db'}"]


KINDS = ["export --out", "report --out", "predict --output", "run --cache-dir", "artifacts: folder", "storage folder"]


def one_error_line(code: int, err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(ERROR), err
    assert sum(line.startswith(ERROR) for line in lines) == 1, err
    assert code == 1, f"exit code {code}:\n{err}"
    return lines[-1][len(ERROR) :]


def scratch_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "scratch"
    folder.mkdir()
    os.chmod(tmp_path, 0o777)
    os.chmod(folder, 0o777)
    return folder


def storage_digest(url: str) -> str:
    return hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ under a file


@pytest.mark.parametrize("kind", KINDS)
def test_a_path_under_a_file_is_refused_before_any_work(study, tmp_path, capfd, kind, monkeypatch):
    monkeypatch.setenv("LATENCYSOLVER_CACHE", str(tmp_path / "default-cache"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    scratch = scratch_dir(tmp_path)
    before = storage_digest(study["storage"])
    capfd.readouterr()
    code = main(command(kind, study, blocker / "sub", scratch))
    line = one_error_line(code, capfd.readouterr().err)
    assert str(blocker / "sub") in line and f"{str(blocker)!r} is a file, not a folder" in line, line
    assert blocker.read_text() == "not a folder\n"
    assert storage_digest(study["storage"]) == before
    assert {p.name for p in scratch.iterdir()} <= {"study.yaml"}, "a refused run created something"
    assert not (tmp_path / "default-cache").exists()


# ------------------------------------------------------------------------------------------------ read-only, full


# what the command line imports, loaded once into the fork server (tests.test_output_paths: the children's target)
PRELOAD = [
    "latencysolver.cli",
    "latencysolver.search.run",
    "latencysolver.ship.export",
    "latencysolver.ship.predict",
    "latencysolver.results.report",
    "tests.test_output_paths",
]
CLONE_NEWNS = 0x00020000


@pytest.fixture(scope="module")
def fork_server():
    """A multiprocessing context whose fork server has imported ``PRELOAD`` (started offline, as the children run),
    stopped after the module."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        context.Process(target=int).start()  # starts the server (importing PRELOAD) under that environment
    yield context
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # the server holds torch and transformers in memory: not for the whole session


def _in_child(args: list[str], cwd: str, env: dict[str, str], setup: str | None, limit: bool, folder: str | None):
    """The fork server's child: its own stdout/stderr files in ``cwd``, environment and working folder; with
    ``setup``, a mount namespace of its own where that shell script runs first; then ``main(args)`` and, with
    ``folder``, the files left there, listed from inside the namespace (a tmpfs goes with it)."""
    from latencysolver.cli import main

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, name in ((1, "child.out"), (2, "child.err")):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    if setup is not None:
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        # private first, as `unshare -m` does: no mount made here reaches the parent's namespace
        subprocess.run(["bash", "-c", f"mount --make-rprivate / && {setup}"], check=True)
    if limit:
        _file_size_limit()
    try:
        code = main(args)
    finally:
        if folder is not None:
            files = [str(p.relative_to(folder)) for p in sorted(Path(folder).rglob("*"))]
            Path("child.files").write_text("".join(f + "\n" for f in files))
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


def run_child(
    fork_server, args: list[str], cwd: Path, env: dict[str, str], setup: str | None = None, **kwargs
) -> tuple[int, str, str, list[str]]:
    """``main(ARGS)`` in a child of ``fork_server`` (see ``_in_child``): (exit code, stdout, stderr, files left)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    env.pop("LATENCYSOLVER_STORAGE", None)
    process = fork_server.Process(
        target=_in_child,
        args=(args, str(cwd), env, setup, kwargs.get("limit", False), kwargs.get("folder")),
    )
    process.start()
    process.join(timeout=300)
    if process.exitcode is None:
        process.kill()
        process.join()
        pytest.fail(f"still running after 300 s: {args}")
    listing = cwd / "child.files"
    files = sorted(f for f in listing.read_text().splitlines() if f) if listing.exists() else []
    return process.exitcode, (cwd / "child.out").read_text(), (cwd / "child.err").read_text(), files


def child(fork_server, args: list[str], folder: Path, mode: str, cwd: Path) -> tuple[int, str, list[str]]:
    """``latencysolver ARGS`` with ``folder`` read-only or full; (exit code, stderr, files left there)."""
    env = {"LATENCYSOLVER_CACHE": str(cwd / "c")}
    folder.mkdir(exist_ok=True)
    setup, limit = None, False
    if MOUNTS:
        options = "ro" if mode == "read-only" else f"size={FULL_SIZE}"
        setup = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(folder))}"
    elif mode == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root without mount namespaces: no folder is read-only to root")
        folder.chmod(0o555)
    else:
        limit = True
    code, _, err, files = run_child(fork_server, args, cwd, env, setup, limit=limit, folder=str(folder))
    folder.chmod(0o755)
    return code, err, files


def _file_size_limit() -> None:
    limit = 256 * 1024
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as ENOSPC would
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


REASONS = {
    "read-only": ("Read-only file system", "Permission denied"),
    "full": ("No space left on device", "File too large"),
}


@pytest.mark.parametrize("mode", ["read-only", "full"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_read_only_or_full_folder_is_one_line_and_leaves_nothing_half_written(
    study, fork_server, tmp_path, kind, mode
):
    scratch = scratch_dir(tmp_path)
    folder = tmp_path / "target"
    before = storage_digest(study["storage"])
    code, err, left = child(fork_server, command(kind, study, folder, scratch), folder, mode, tmp_path)
    line = one_error_line(code, err)
    assert str(folder) in line, line
    assert any(reason in line for reason in REASONS[mode]), line
    assert storage_digest(study["storage"]) == before
    if mode == "read-only":  # refused before any work: nothing trained, nothing in storage
        assert left == []
        assert {p.name for p in scratch.iterdir()} <= {"study.yaml"}, "a refused run created something"
        return
    # a full disk: no temporary file, no staging folder, and no file that a later reader would take as whole
    assert not [f for f in left if Path(f).name.startswith(".")], left
    whole = {
        "export --out": lambda f: False,  # the export folder only appears complete
        "report --out": lambda f: False,
        "predict --output": lambda f: False,
        "run --cache-dir": lambda f: "teachers/" not in f or f.endswith(".lock"),  # no teacher, whole or part
        "artifacts: folder": lambda f: f == "art",  # the teacher's files were removed when one did not fit
        "storage folder": lambda f: f in ("s.db", "s-artifacts", "s.db.lock"),
    }[kind]
    assert all(whole(f) for f in left), left
    if kind == "artifacts: folder":  # and the study does not record a teacher that is not there
        from latencysolver.results.records import study_record
        from latencysolver.results.storage import load_existing_study

        stored = load_existing_study("tiny", f"sqlite:///{scratch / 'study.db'}")
        assert study_record(stored).teacher_artifacts is None


# ------------------------------------------------------------------------------------------------ item 17


def test_a_killed_teacher_save_leaves_no_staging_folder_for_ever(study, tmp_path, capfd):
    """kill -9 during the teacher's save leaves ``teachers/.<key>-xxxx``; the next run that takes the key's lock
    removes it (no live process can be writing it then)."""
    teachers = study["root"] / "cache" / "teachers"
    (key,) = [p.name for p in teachers.iterdir() if p.is_dir() and not p.name.startswith(".")]
    stale = teachers / f".{key}-k1ll3d"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 100)
    other = teachers / ".0123456789abcdef-notmine"  # another key's: its own lock guards it, left alone
    other.mkdir()
    fresh = write_study_yaml(tmp_path, study["model"], study["data"], n_trials=1)
    assert main(["run", str(fresh), "--cache-dir", str(study["root"] / "cache"), "--no-progress"]) == 0
    assert "teacher: cached fine-tune" in capfd.readouterr().out
    assert not stale.exists()
    assert other.is_dir()


@pytest.mark.parametrize("command_name", ["run", "worker"])
def test_a_read_only_database_is_named_before_any_work(study, fork_server, tmp_path, command_name):
    """Not Optuna's "exceeding max length" after the teacher fine-tune: the read-only file, at once."""
    db = tmp_path / "ro" / "study.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    args = (
        ["run", str(study["yaml"]), "--storage", url, "--trials", "2", "--no-progress"]
        if command_name == "run"
        else ["worker", "--study", "tiny", "--storage", url, "--no-progress"]
    )
    source = study["root"] / "study.db"
    setup = None
    if MOUNTS:  # the database on a read-only mount (root writes through file modes)
        folder = shlex.quote(str(db.parent))
        setup = (
            f"mount -t tmpfs tmpfs {folder} && cp {shlex.quote(str(source))} {folder}/ && mount -o remount,ro {folder}"
        )
    elif os.geteuid() != 0:
        db.write_bytes(source.read_bytes())
        db.chmod(0o444)
    else:
        pytest.skip("root without mount namespaces: no database is read-only to root")
    code, out, err, _ = run_child(fork_server, args, tmp_path, {"LATENCYSOLVER_CACHE": str(tmp_path / "c")}, setup)
    line = one_error_line(code, err)
    assert str(db) in line and ("read-only" in line.lower() or "Permission denied" in line), line
    assert "teacher" not in out, "the check came after the work"
    assert not (tmp_path / "c").exists()


def test_predict_output_to_a_fifo_writes_in_place_and_leaves_the_fifo(study, tmp_path, capfd):
    """A device or FIFO (``/dev/stdout``) is written in place: renaming a temporary file onto it would replace the
    node itself (as root, ``--output /dev/null`` would have left a regular file at /dev/null)."""
    import stat
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    rows = study["root"] / "rows.jsonl"
    args = ["predict", str(study["root"] / "exp"), "--input", str(rows), "--output", str(fifo), "--no-progress"]
    assert main(args) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the FIFO was replaced by a file"
    assert len(received[0].encode()) > 256 * 1024  # what the full-disk case of predict --output needs
    lines = received[0].splitlines()
    assert len(lines) == len(rows.read_text().splitlines())
    assert json.loads(lines[0])["answer"] in ("yes", "no")
    assert [p.name for p in tmp_path.iterdir()] == ["out.fifo"]  # no temporary file beside it
