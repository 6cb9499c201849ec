"""The bad-input table of docs/guides/errors.md, one test per row, through the real CLI.

Every row checks the same contract: exit code 1, stderr ending in exactly one ``latencysolver: error: ...`` line
that names the file / key / value / URL at fault, no Python traceback, and storage left as it was (a SQLite file
that did not exist is not created; one that did keeps its bytes, studies and trials; a PostgreSQL database keeps
its studies and trials).  Most rows call ``latencysolver.cli.main`` in-process (fd-level capture, so anything a
library writes to stderr counts too); the alias bomb runs ``python -m latencysolver``, so that a regression costs
a child process its memory, not the test run's (tests/test_exit_codes.py checks what a shell sees of the process).

"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latencysolver.cli import main

ERROR = "latencysolver: error: "
TWO_OBJECTIVES = ["maximize", "maximize"]  # accuracy, speed-up: what `run` creates by default


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No default storage from the environment, and a cache that is this test's own even without --cache-dir."""
    monkeypatch.delenv("LATENCYSOLVER_STORAGE", raising=False)
    monkeypatch.setenv("LATENCYSOLVER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # `./latencysolver-artifacts` (non-SQLite storage) would land here


def cli(args: list[str], capfd) -> tuple[int, str]:
    """``latencysolver ARGS`` in this process; returns (exit code, everything written to stderr)."""
    capfd.readouterr()  # drop what earlier steps of the test printed
    code = main([str(a) for a in args])
    return code, capfd.readouterr().err


def cli_process(args: list[str], cwd: Path) -> tuple[int, str]:
    """``python -m latencysolver ARGS`` in a child process, offline; returns (exit code, stderr)."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "LATENCYSOLVER_CACHE": str(cwd / "cache"),
    }
    env.pop("LATENCYSOLVER_STORAGE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "latencysolver", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stderr


def error_line(code: int, err: str) -> str:
    """Check the one-line contract and return that line (without the prefix) for the row's own checks."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, f"exit code {code} and nothing on stderr"
    assert lines[-1].startswith(ERROR), f"last stderr line is not the error line:\n{err}"
    assert sum(line.startswith("latencysolver: error") for line in lines) == 1, err
    assert code == 1, f"exit code {code}, stderr:\n{err}"
    return lines[-1][len(ERROR) :]


def studies(url: str) -> dict[str, dict]:
    """Every study of a storage: directions, user attrs and each trial's number, state, params and values."""
    import optuna

    out = {}
    for summary in optuna.get_all_study_summaries(url, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        out[summary.study_name] = {
            "directions": [d.name for d in summary.directions],
            "user_attrs": summary.user_attrs,
            "trials": [(t.number, t.state.name, t.params, t.values) for t in study.get_trials(deepcopy=False)],
        }
    return out


def storage_state(url: str):
    """What "storage unchanged" compares: for SQLite the file's bytes (None: no file) and its studies."""
    from sqlalchemy.engine import make_url

    if url.startswith("sqlite"):
        db = Path(make_url(url).database)
        if not db.exists():
            return None  # and reading it with Optuna would create it
        digest = hashlib.sha256(db.read_bytes()).hexdigest()
        return digest, studies(url)
    return studies(url)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def assert_nothing_created(tmp_path: Path) -> None:
    assert not (tmp_path / "study.db").exists(), "a storage file was created"
    assert not (tmp_path / "study-artifacts").exists(), "an artifact folder was created"
    assert not (tmp_path / "latencysolver-artifacts").exists(), "an artifact folder was created"
    assert not (tmp_path / "cache" / "teachers").exists(), "a teacher was trained"


def tiny_run(path: Path, tmp_path: Path, *extra: str) -> None:
    """One successful run (1 trial) of a tiny study, so that a later bad run has storage and cache to spoil."""
    assert (
        main(["run", str(path), "--trials", "1", "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra]) == 0
    )


# ------------------------------------------------------------------------------------------------ 1. malformed YAML


@pytest.mark.parametrize("where", ["study file", "search-space file"])
def test_1_malformed_yaml_names_file_and_line(tmp_path, capfd, where):
    study = tmp_path / "bad.yaml"
    space = tmp_path / "space.yaml"
    broken = "prune_ratio: {choices: [0.0, 0.5}\nquant_dtype: fp32\n"  # unclosed '[' on line 1
    if where == "study file":
        study.write_text(
            f"name: tiny\nn_trials: 3\nsearch_space: {{prune_ratio: [0.1\n"  # line 3: unclosed '['
            f"storage: {sqlite_url(tmp_path)}\n"
        )
        culprit = study
        # PyYAML notices the missing ']' where the next key starts (line 4, column 8), and that is the line named
        expected = "malformed YAML at line 4, column 8"
    else:
        space.write_text(broken)
        study.write_text(f"name: tiny\nsearch_space: space.yaml\nstorage: {sqlite_url(tmp_path)}\n")
        culprit = space
        expected = "malformed YAML at line 1, column 33"
    code, err = cli(["run", study], capfd)
    line = error_line(code, err)
    assert line.startswith(f"{culprit}: ") and expected in line, line
    assert_nothing_created(tmp_path)


def test_1_alias_bomb_is_refused_in_one_short_line(tmp_path):
    # issue 16: ~500 bytes of nested aliases grew to 2 GB and died of MemoryError
    levels = [f"&l0 [{', '.join(['lol'] * 9)}]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    study = tmp_path / "bomb.yaml"
    study.write_text(f"name: tiny\nsearch_space: {{alpha: 0.5}}\nn_trials: [{', '.join(levels)}]\n")
    code, err = cli_process(["run", study, "--storage", sqlite_url(tmp_path)], tmp_path)
    line = error_line(code, err)
    assert line.startswith(f"{study}: refused YAML"), line
    assert len(err) < 400, err[:400]
    assert_nothing_created(tmp_path)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"name: caf\xe9\nsearch_space: {alpha: 0.5}\n", "not UTF-8 text: byte 0xe9 at line 1"),
        (b"name: tiny\nsearch_space: " + b"[" * 5000 + b"]" * 5000 + b"\n", "refused YAML: nested too deeply"),
        (b"name: tiny\nsearch_space: {alpha: 0.5}\nname: other\n", "duplicate key 'name' at line 3"),
    ],
    ids=["not-utf8", "deeply-nested", "duplicate-key"],
)
def test_1_unreadable_study_yaml_is_one_line(tmp_path, capfd, content, expected):
    study = tmp_path / "bad.yaml"
    study.write_bytes(content + f"storage: {sqlite_url(tmp_path)}\n".encode())
    code, err = cli(["run", study, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert line.startswith(f"{study}: ") and expected in line, line
    assert_nothing_created(tmp_path)


# ------------------------------------------------------------------------------------------------ 2. unknown knob


def test_2_unknown_inline_knob_names_it_and_lists_known_knobs(study_yaml, tmp_path, capfd):
    from latencysolver.config.knobs import KNOB_NAMES

    path = study_yaml(search_space={"prune_ratio": {"choices": [0.0, 0.5]}, "dropout_rate": {"low": 0, "high": 1}})
    code, err = cli(["run", path, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert line.startswith(f"{path}: search_space.dropout_rate: unknown knob"), line
    assert f"(known knobs: {', '.join(KNOB_NAMES)})" in line
    assert_nothing_created(tmp_path)


# ------------------------------------------------------------------------------------------------ 3. empty range


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "search-space-file"])
def test_3_empty_range_names_key_and_both_values(study_yaml, tmp_path, capfd, inline):
    knob = {"low": 4.5, "high": 1.25}
    if inline:
        path = study_yaml(search_space={"temperature": knob, "alpha": 0.5})
        prefix = f"{path}: search_space.temperature"
    else:
        space = tmp_path / "spaces" / "backwards.yaml"
        space.parent.mkdir()
        space.write_text(yaml.safe_dump({"temperature": knob, "alpha": 0.5}))
        path = study_yaml(search_space="spaces/backwards.yaml")
        prefix = f"{space.resolve()}: temperature"
    code, err = cli(["run", path, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert line == f"{prefix}: empty range, low <= high must hold, but got (low=4.5, high=1.25)"
    assert_nothing_created(tmp_path)


# ------------------------------------------------------------------------------------------------ 4. bad storage URL


@pytest.mark.parametrize(
    "url, expected",
    [
        ("notaurl", "--storage: cannot parse 'notaurl' as a database URL"),
        ("foo://x", "--storage 'foo://x': unknown database driver"),
        ("foo+bar://user:secret@host/db", "--storage 'foo+bar://user:***@host/db': unknown database driver"),
        ("postgresql+psycopg://user:secret@host:notaport/db", "cannot parse"),
    ],
)
def test_4_bad_storage_url_names_the_url(study_yaml, tmp_path, capfd, url, expected):
    code, err = cli(["run", study_yaml(), "--storage", url, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert expected in line, line
    assert "secret" not in err
    assert_nothing_created(tmp_path)


def test_4_bad_storage_url_with_the_default_cache(study_yaml, tmp_path, capfd):
    code, err = cli(["run", study_yaml(), "--storage", "notaurl"], capfd)
    line = error_line(code, err)
    assert "'notaurl'" in line
    assert_nothing_created(tmp_path)


# ------------------------------------------------------------------------------------------------ 5. wrong password


def test_5_wrong_postgresql_password(study_yaml, tmp_path, capfd, postgres_url):
    import optuna
    from sqlalchemy.engine import make_url

    # a study already there, so that "unchanged" means something
    optuna.create_study(study_name="tiny", storage=postgres_url, directions=TWO_OBJECTIVES).optimize(
        lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1
    )
    before = storage_state(postgres_url)
    bad = make_url(postgres_url).set(password="not-the-password")
    code, err = cli(
        [
            "run",
            study_yaml(artifacts=str(tmp_path / "artifacts")),
            "--storage",
            bad.render_as_string(hide_password=False),
            "--cache-dir",
            tmp_path / "cache",
        ],
        capfd,
    )
    line = error_line(code, err)
    assert line.startswith(f"--storage {bad.render_as_string(hide_password=True)!r}: cannot connect"), line
    assert "***" in line and "not-the-password" not in err
    assert storage_state(postgres_url) == before
    assert_nothing_created(tmp_path)
    assert not (tmp_path / "artifacts").exists()


# ------------------------------------------------------------------------------------------------ 6. missing data


def test_6_missing_data_folder(study_yaml, tmp_path, capfd):
    missing = tmp_path / "nonexistent"
    code, err = cli(["run", study_yaml(), "--data", missing, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert line.startswith(f"data folder not found: {str(missing)!r}"), line
    assert_nothing_created(tmp_path)
    assert not (tmp_path / "cache").exists() or tree(tmp_path / "cache") == []


# ------------------------------------------------------------------------------------------------ 7. corrupted teacher


def test_7_corrupted_teacher_cache_names_folder_and_changes_no_storage(study_yaml, tmp_path, capfd):
    path = study_yaml()
    cache = tmp_path / "cache"
    tiny_run(path, tmp_path)
    (teacher,) = [p for p in (cache / "teachers").iterdir() if p.is_dir()]
    weights = teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as after a full disk
    url = sqlite_url(tmp_path)
    before, files = storage_state(url), tree(tmp_path)
    assert [t[1] for t in before[1]["tiny"]["trials"]] == ["COMPLETE"]

    code, err = cli(["run", path, "--trials", "3", "--cache-dir", cache, "--no-progress"], capfd)
    line = error_line(code, err)
    assert line.startswith(f"teacher checkpoint {teacher} cannot be loaded"), line
    assert line.endswith("delete the folder to rebuild it"), line
    assert storage_state(url) == before  # same bytes, same single trial
    assert tree(tmp_path) == files


# ------------------------------------------------------------------------------------------------ 8. other objective


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path) -> str:
    return sqlite_url(tmp_path) if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_8_existing_study_with_another_objective(study_yaml, tmp_path, capfd, storage_url):
    from sqlalchemy.engine import make_url

    latency = {"rows": 4, "warmup": 1, "repeats": 2, "threads": 1}
    artifacts = str(tmp_path / "artifacts")
    tiny_run(study_yaml(storage=storage_url, artifacts=artifacts), tmp_path)
    before, files = storage_state(storage_url), tree(tmp_path)
    snapshot = before[1] if storage_url.startswith("sqlite") else before
    assert len(snapshot["tiny"]["trials"]) == 1

    other = study_yaml(storage=storage_url, artifacts=artifacts, latency={**latency, "objective": "latency_ms"})
    code, err = cli(["run", other, "--trials", "3", "--cache-dir", tmp_path / "cache", "--no-progress"], capfd)
    line = error_line(code, err)
    assert line.startswith("study 'tiny' in "), line
    assert "optimizes ['accuracy', 'speedup']" in line and "['accuracy', 'latency_ms']" in line
    assert str(other) in line
    assert storage_state(storage_url) == before
    assert tree(tmp_path) == files
    password = make_url(storage_url).password
    assert not password or f":{password}@" not in err


# ------------------------------------------------------------------------------------------------ 9. worker, no study


def _two_studies(url: str) -> None:
    import optuna

    for name in ("alpha-study", "beta-study"):
        optuna.create_study(study_name=name, storage=url, directions=TWO_OBJECTIVES)


def test_9_worker_for_a_missing_study_lists_the_studies_there(tmp_path, capfd):
    url = sqlite_url(tmp_path)
    _two_studies(url)
    before, files = storage_state(url), tree(tmp_path)
    args = ["worker", "--study", "gamma-study", "--storage", url, "--cache-dir", tmp_path / "cache", "--no-progress"]
    code, err = cli(args, capfd)
    line = error_line(code, err)
    assert line == f"--study: no study named 'gamma-study' in {url!r} (studies there: ['alpha-study', 'beta-study'])"
    assert storage_state(url) == before
    assert tree(tmp_path) == files


def test_9_worker_for_a_missing_study_on_postgresql(tmp_path, capfd, postgres_url):
    from sqlalchemy.engine import make_url

    _two_studies(postgres_url)
    before = storage_state(postgres_url)
    code, err = cli(
        [
            "worker",
            "--study",
            "gamma-study",
            "--storage",
            postgres_url,
            "--cache-dir",
            tmp_path / "cache",
            "--no-progress",
        ],
        capfd,
    )
    line = error_line(code, err)
    assert line.startswith("--study: no study named 'gamma-study' in "), line
    assert line.endswith("(studies there: ['alpha-study', 'beta-study'])"), line
    assert storage_state(postgres_url) == before
    assert_nothing_created(tmp_path)
    assert f":{make_url(postgres_url).password}@" not in err


def test_9_worker_on_a_missing_storage_file_creates_none(tmp_path, capfd):
    url = sqlite_url(tmp_path)
    code, err = cli(["worker", "--study", "gamma-study", "--storage", url, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert line == f"--storage {url!r}: no such database file {str(tmp_path / 'study.db')!r}"
    assert tree(tmp_path) == []


def test_9_worker_on_a_file_that_is_not_a_database(tmp_path, capfd):
    db = tmp_path / "study.db"
    db.write_text("not a database " * 20)
    content = db.read_bytes()
    code, err = cli(["worker", "--study", "gamma-study", "--storage", sqlite_url(tmp_path)], capfd)
    line = error_line(code, err)
    assert str(db) in line
    assert db.read_bytes() == content


def test_9_worker_on_an_empty_file_lists_no_studies(tmp_path, capfd):
    db = tmp_path / "study.db"
    db.touch()
    code, err = cli(["worker", "--study", "gamma-study", "--storage", sqlite_url(tmp_path)], capfd)
    line = error_line(code, err)
    assert line.endswith("(studies there: [])"), line
    assert db.stat().st_size == 0  # Optuna would have written its schema into it


# ------------------------------------------------------------------------------------------------ 10. misleading


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "{study}", "--data", ""], "data: empty"),
        (["run", "{study}", "--model", "./no-such-model"], "model: './no-such-model': no such folder"),
        (["run", "{study}", "--model", "{tmp}/models/no-such-model"], "/models/no-such-model': no such folder"),
        (["run", "{tmp}"], "is a folder, not a YAML file"),
        (["bench", "./no-such-model"], "model: './no-such-model': no such folder"),
    ],
    ids=["empty-data", "relative-model", "absolute-model", "study-is-a-folder", "bench-relative-model"],
)
def test_10_messages_that_misled(study_yaml, tmp_path, capfd, args, expected):
    # issue 16: "list index out of range", "Repo id must be in the form ...", "file not found" for a folder
    study = study_yaml() if "{study}" in args else None
    args = [a.replace("{study}", str(study)).replace("{tmp}", str(tmp_path)) for a in args]
    code, err = cli([*args, "--cache-dir", tmp_path / "cache"], capfd)
    line = error_line(code, err)
    assert expected in line, line
    for misleading in ("list index", "Repo id", "file not found"):
        assert misleading not in line, line
    assert_nothing_created(tmp_path)


# ------------------------------------------------------------------------------------------------ 11. reserved name


@pytest.mark.parametrize("where", ["name", "file name"])
def test_11_a_study_name_with_the_confirm_suffix_is_refused(study_yaml, tmp_path, capfd, where):
    """``NAME:confirm`` is where ``confirm`` keeps the seed repeats of study NAME: ``run`` does not make one."""
    path = study_yaml(name="tiny:confirm")
    if where == "file name":  # no name: key, the file's stem is the name
        raw = yaml.safe_load(path.read_text())
        del raw["name"]
        path = path.with_name("tiny:confirm.yaml")
        path.write_text(yaml.safe_dump(raw))
    code, err = cli(["run", path, "--cache-dir", tmp_path / "cache", "--no-progress"], capfd)
    line = error_line(code, err)
    assert line.startswith(f"{path}: name: 'tiny:confirm' ends in ':confirm'"), line
    assert_nothing_created(tmp_path)


# ------------------------------------------------------------------------------------------------ 12. class order


def test_12_class_names_that_invert_true_false_labels(study_yaml, synthetic_data_dir, tmp_path, capfd):
    path = study_yaml(data={"source": str(synthetic_data_dir), "max_length": 64, "labels": ["yes", "no"]})
    code, err = cli(["run", path, "--cache-dir", tmp_path / "cache", "--no-progress"], capfd)
    line = error_line(code, err)
    assert line.startswith(f"{synthetic_data_dir / 'train.jsonl'}: column 'label' holds true/false"), line
    assert "data.labels ['yes', 'no']" in line, line
    assert_nothing_created(tmp_path)
