"""Bad input through the CLI: one clear line naming the culprit, a non-zero exit, and nothing written."""

from __future__ import annotations

import pytest

from latencysolver.cli import main


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "study.db").exists(), "a storage file was created"
    assert not (tmp_path / "study-artifacts").exists(), "an artifact folder was created"
    assert not (tmp_path / "cache" / "teachers").exists(), "a teacher was trained"


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("name: [unclosed\n", "malformed YAML at line"),
        ("search_space: {prune_rate: 0.1}\n", "prune_rate: unknown knob"),
        ("search_space: {skip_prob: {low: 0.5, high: 0.1}}\n", "empty range"),
        ("search_space: {rank: {choices: []}}\n", "rank.choices: empty list"),
        ("search_space: {}\ndistillation: {steps: ten}\n", "distillation.steps: expected an integer, got 'ten'"),
        ("search_space: {}\nbudget: 3\n", "budget: unknown key"),
    ],
)
def test_bad_study_yaml(tmp_path, capsys, yaml_text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text + f"storage: sqlite:///{tmp_path / 'study.db'}\n")
    code, err = run_cli(["run", str(path), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and expected in err
    assert_nothing_written(tmp_path)


def test_missing_data_folder(study_yaml, tmp_path, capsys):
    code, err = run_cli(
        ["run", str(study_yaml()), "--data", str(tmp_path / "no-such-folder"), "--cache-dir", str(tmp_path / "cache")],
        capsys,
    )
    assert code == 1 and len(err.splitlines()) == 1
    assert "data folder not found" in err and "no-such-folder" in err
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("not a url", "cannot parse 'not a url'"),
        ("nosuchdb://user@host/db", "unknown database driver"),
        ("sqlite:////no/such/folder/x.db", "folder '/no/such/folder' does not exist"),
        ("postgresql+psycopg://user:secret@127.0.0.1:1/db", "cannot connect"),
    ],
)
def test_bad_storage_url(study_yaml, tmp_path, capsys, url, expected):
    code, err = run_cli(["run", str(study_yaml()), "--storage", url, "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert expected in err
    assert "secret" not in err  # a password never reaches the terminal
    assert_nothing_written(tmp_path)


SECRET_URLS = [
    "postgresql+psycopg://127.0.0.1:1/db?password=secretpw",
    "postgresql+psycopg:///db?host=127.0.0.1&port=1&user=u&password=secretpw",
    "postgresql+psycopg://u:secretpw@127.0.0.1:1/db?sslpassword=secretpw&api_token=secretpw",
    "postgresql+psycopg://u:secretpw@127.0.0.1:notaport/db?password=secretpw",  # unparseable: port not a number
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_no_form_of_password_is_printed(study_yaml, tmp_path, capsys, url):
    """Issue 16: a password in the query string was printed in clear."""
    from latencysolver.results.storage import shown_url

    assert "secretpw" not in shown_url(url) and "***" in shown_url(url)
    code, err = run_cli(["run", str(study_yaml()), "--storage", url, "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "secretpw" not in err and "***" in err, err
    for command in (["pareto", "--study", "x"], ["export", "--study", "x", "--trial", "0", "--out", "o"]):
        code, err = run_cli([*command, "--storage", url], capsys)
        assert code == 1 and "secretpw" not in err and "***" in err, err


def test_the_storage_default_from_the_environment_is_masked_in_help(monkeypatch, capsys):
    from latencysolver.cli import STORAGE_ENV

    monkeypatch.setenv(STORAGE_ENV, SECRET_URLS[2])
    with pytest.raises(SystemExit):
        main(["pareto", "--help"])
    out = capsys.readouterr().out
    assert "secretpw" not in out and "127.0.0.1" in out


def test_pareto_on_missing_storage_creates_nothing(tmp_path, capsys):
    code, err = run_cli(["pareto", "--study", "x", "--storage", f"sqlite:///{tmp_path / 'study.db'}"], capsys)
    assert code == 1 and "no such database file" in err
    assert not (tmp_path / "study.db").exists()


def test_console_entry_point_exits_non_zero(tmp_path, capfd, monkeypatch):
    """In process, with everything written to the stderr file descriptor captured; what a shell sees of
    ``python -m latencysolver`` (the exit code, one stderr line) is tests/test_exit_codes.py's."""
    monkeypatch.chdir(tmp_path)  # where the default storage, latencysolver.db, would be created
    bad = tmp_path / "bad.yaml"
    bad.write_text("search_space: {quant_dtype: {choices: [int4]}}\n")
    capfd.readouterr()
    assert main(["run", str(bad)]) == 1
    assert capfd.readouterr().err.strip().splitlines() == [
        f"latencysolver: error: {bad}: search_space.quant_dtype.choices: expected each choice to be one of "
        "['fp32', 'bf16', 'fp16', 'int8', 'ort-fp32', 'ort-int8'], got 'int4'"
    ]
    assert not (tmp_path / "latencysolver.db").exists()


def test_wrong_postgresql_password_changes_nothing(study_yaml, tmp_path, capsys, postgres_url):
    import optuna
    from sqlalchemy.engine import make_url

    bad = make_url(postgres_url).set(password="not-the-password").render_as_string(hide_password=False)
    code, err = run_cli(["run", str(study_yaml()), "--storage", bad, "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "cannot connect" in err and "not-the-password" not in err and "***" in err
    assert optuna.get_all_study_summaries(postgres_url) == []  # the real database: still empty
    assert_nothing_written(tmp_path)


def _studies(url: str) -> dict[str, int]:
    import optuna

    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}


def test_corrupted_teacher_cache_through_the_cli_leaves_the_study_alone(study_yaml, tmp_path, capsys):
    from latencysolver.config.study import load_study_config

    path = study_yaml(n_trials=1)
    cache = tmp_path / "cache"
    assert main(["run", str(path), "--cache-dir", str(cache), "--no-progress"]) == 0
    storage = load_study_config(path).storage
    before = _studies(storage)
    (teacher,) = [p for p in (cache / "teachers").iterdir() if p.is_dir()]
    weights = teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a half-written file, as after a full disk
    capsys.readouterr()
    code, err = run_cli(["run", str(path), "--trials", "3", "--cache-dir", str(cache), "--no-progress"], capsys)
    assert code == 1
    assert len(err.splitlines()) == 1, err
    last = err
    assert last.startswith("latencysolver: error: teacher checkpoint") and str(teacher) in last
    assert "delete the folder to rebuild it" in last
    assert _studies(storage) == before


def test_asking_an_existing_study_for_another_objective_changes_nothing(study_yaml, tmp_path, capsys):
    from latencysolver.config.study import load_study_config

    path = study_yaml(n_trials=1)
    assert main(["run", str(path), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    storage = load_study_config(path).storage
    before = _studies(storage)
    other = study_yaml(
        n_trials=3, latency={"rows": 4, "warmup": 1, "repeats": 2, "threads": 1, "objective": "latency_ms"}
    )
    capsys.readouterr()
    code, err = run_cli(["run", str(other), "--cache-dir", str(tmp_path / "cache"), "--no-progress"], capsys)
    assert code == 1
    assert len(err.splitlines()) == 1, err
    last = err
    assert "optimizes ['accuracy', 'speedup']" in last and "latency_ms" in last
    assert _studies(storage) == before


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["export", "--study", "s", "--best", "near-teacher", "--tolerance", "-0.1", "--out", "x"],
            "--tolerance: must be >= 0",
        ),
        (
            ["export", "--study", "s", "--best", "near-teacher", "--tolerance", "nan", "--out", "x"],
            "--tolerance: must be >= 0",
        ),
        (["bench", "no-such-model", "--max-length", "0"], "--max-length must be > 0, but got 0"),
        (["bench", "no-such-model", "--max-length", "-3"], "--max-length must be > 0, but got -3"),
        (["run", "no-such-study.yaml", "--workers", "0"], "--workers: expected a positive integer, got 0"),
        (["run", "no-such-study.yaml", "--workers", "-2"], "--workers: expected a positive integer, got -2"),
        (["export", "--study", "s", "--best", "--margin", "-0.01", "--out", "x"], "--margin: must be >= 0"),
        (["export", "--study", "s", "--best", "--margin", "nan", "--out", "x"], "--margin: must be >= 0"),
        (
            ["export", "--study", "s", "--best", "--confidence", "0.4", "--out", "x"],
            "--confidence: must be in (0.5, 1)",
        ),
        (["export", "--study", "s", "--best", "--confidence", "1", "--out", "x"], "--confidence: must be in (0.5, 1)"),
    ],
    ids=[
        "tolerance-negative",
        "tolerance-nan",
        "max-length-0",
        "max-length-negative",
        "workers-0",
        "workers-neg",
        "margin-negative",
        "margin-nan",
        "confidence-low",
        "confidence-1",
    ],
)
def test_unchecked_options_are_checked(tmp_path, capsys, monkeypatch, args, expected):
    # issue 16: these went on to fail elsewhere (or not at all)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(
        [*args, "--storage", f"sqlite:///{tmp_path / 'study.db'}"] if args[0] == "export" else args, capsys
    )
    assert code == 1, err
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "selection, option, expected",
    [
        (["--trial", "3"], ["--margin", "0.02"], "--margin goes with --best non-inferior, not with --trial"),
        (["--trial", "3"], ["--fallback", "knee"], "--fallback goes with --best non-inferior, not with --trial"),
        (["--trial", "3"], ["--confidence", "0.9"], "--confidence goes with --best non-inferior, not with --trial"),
        (["--trial", "3"], ["--tolerance", "0.02"], "--tolerance goes with --best near-teacher"),
        (["--best", "knee"], ["--margin", "0.02"], "--margin goes with --best non-inferior, not with --best knee"),
        (["--best", "knee"], ["--fallback", "max-accuracy"], "--fallback goes with --best non-inferior, not with"),
        (["--best"], ["--tolerance", "0.02"], "not with --best non-inferior"),  # no near-teacher fallback
        (["--best", "near-teacher"], ["--confidence", "0.9"], "not with --best near-teacher"),
        (["--max-latency-ms", "5"], ["--margin", "0.1"], "not with --max-latency-ms"),
        (["--max-latency-ms", "5"], ["--tolerance", "0.1"], "(or --fallback near-teacher), not with --max-latency-ms"),
    ],
    ids=[
        "trial-margin",
        "trial-fallback",
        "trial-confidence",
        "trial-tolerance",
        "knee-margin",
        "knee-fallback",
        "non-inferior-tolerance",
        "near-teacher-confidence",
        "max-latency-margin",
        "max-latency-tolerance",
    ],
)
def test_export_options_that_do_not_apply_are_a_usage_error(tmp_path, capsys, selection, option, expected):
    """They were silently ignored: ``--trial 3 --margin 0.02`` exported trial 3 as if --margin meant something."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(SystemExit) as info:
        main(["export", "--study", "s", "--storage", storage, *selection, *option, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "usage: latencysolver export" in err and expected in err.strip().splitlines()[-1], err
    assert_nothing_written(tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--best", "near-teacher", "--tolerance", "0.02"],
        ["--best", "--fallback", "near-teacher", "--tolerance", "0.02", "--margin", "0.01", "--confidence", "0.9"],
        ["--best", "--fallback", "knee"],
    ],
    ids=["near-teacher-tolerance", "non-inferior-all", "non-inferior-fallback"],
)
def test_export_options_that_apply_pass_the_usage_check(tmp_path, capsys, args):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, err = run_cli(["export", "--study", "s", "--storage", storage, *args, "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "no such database file" in err, err  # got as far as the storage


def _misleading_case(case: str, tmp_path, study_yaml) -> list[str]:
    """The command line of one row of ``test_messages_point_the_right_way`` (files made in ``tmp_path``)."""
    import os

    import optuna

    cache = ["--cache-dir", str(tmp_path / "cache")]
    pipe = tmp_path / "pipe"
    if case in ("study-fifo", "space-fifo", "data-fifo"):
        os.mkfifo(pipe)
    if case == "teacher-folder-of-the-user":
        broken = tmp_path / "my-teacher"
        broken.mkdir()
        (broken / "config.json").write_text("{not json")
        return ["run", str(study_yaml()), "--teacher", str(broken), *cache]
    if case == "study-fifo":
        return ["run", str(pipe), *cache]
    if case == "study-device":
        return ["run", "/dev/null", *cache]
    if case == "space-fifo":
        return ["run", str(study_yaml(search_space="pipe")), *cache]
    if case == "data-fifo":
        return ["run", str(study_yaml()), "--data", str(pipe), *cache]
    if case == "latency-cuda-without-gpu":
        latency = {"rows": 4, "warmup": 1, "repeats": 2, "threads": 1, "device": "cuda"}
        return ["run", str(study_yaml(search_space={"quant_dtype": "fp32"}, latency=latency)), *cache]
    if case in ("trials-not-a-number", "trials-negative"):
        trials = "3,x" if case == "trials-not-a-number" else "3,-1"
        return ["confirm", "--study", "s", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--trials", trials]
    if case == "labels-unquoted-no-yes":
        path = study_yaml()  # written by yaml.safe_dump, which quotes 'no': unquoted here, as a user writes it
        path.write_text(path.read_text().replace("data:\n", "data:\n  labels: [no, yes]\n", 1))
        return ["run", str(path), *cache]
    if case == "long-study-name":
        url = f"sqlite:///{tmp_path / 'other.db'}"
        optuna.create_study(study_name="y" * 2000, storage=url)
        return ["pareto", "--study", "x" * 2000, "--storage", url]
    if case == "long-model-path":
        return ["run", str(study_yaml()), "--model", "./" + "m" * 300, *cache]
    if case == "max-tokens-names-the-file":
        return ["run", str(study_yaml(search_space={"max_tokens": 100})), *cache]  # data.max_length is 64
    if case == "recovery-steps-names-the-file":
        return ["run", str(study_yaml(search_space={"recovery_steps": {"choices": [0, 10]}})), *cache]
    raise AssertionError(case)


MISLEADING = [
    # (case, exit code, what the line must say, what it must not)
    ("teacher-folder-of-the-user", 1, ["my-teacher", "cannot be loaded", "not in latencysolver's cache"], ["delete"]),
    ("study-fifo", 1, ["pipe: is a FIFO (named pipe), not a YAML file"], ["not found"]),
    ("study-device", 1, ["/dev/null: is a character device, not a YAML file"], ["not found"]),
    ("space-fifo", 1, ["search_space: 'pipe' is a FIFO (named pipe), not a YAML file"], ["not found"]),
    ("data-fifo", 1, ["pipe' is a FIFO (named pipe), not a folder"], ["not found"]),
    ("latency-cuda-without-gpu", 1, ["latency.device: cuda", "sees no CUDA device", "time on cpu"], ["auto"]),
    ("trials-not-a-number", 2, ["argument --trials: 'x' is not a trial number"], ["_trial_list"]),
    ("trials-negative", 2, ["argument --trials: '-1' is not a trial number"], ["_trial_list"]),
    ("labels-unquoted-no-yes", 1, ["data.labels[0]: expected a string, got False", "quote it"], []),
    ("long-study-name", 1, ["--study: no study named 'xxx", "...", "(studies there: ['yyy"], []),
    ("long-model-path", 1, ["model: './" + "m" * 300 + "': no such folder"], []),  # a path is named whole
    ("max-tokens-names-the-file", 1, ["study.yaml: search_space.max_tokens: max_tokens 100 is above"], []),
    ("recovery-steps-names-the-file", 1, ["study.yaml: search_space.recovery_steps: recovery_steps is"], []),
]


@pytest.mark.parametrize("case, code, says, never", MISLEADING, ids=[row[0] for row in MISLEADING])
def test_messages_point_the_right_way(tmp_path, capsys, monkeypatch, study_yaml, case, code, says, never):
    """Errors that sent the user the wrong way: "delete the folder" for their own --teacher, "file not found" for
    a FIFO or a device, `auto` offered for latency.device (which refuses it), an internal function's name for a
    bad --trials list, no hint to quote a YAML no/yes, 2,000-character lines, and no file name."""
    import torch

    if case == "latency-cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    argv = _misleading_case(case, tmp_path, study_yaml)
    capsys.readouterr()
    if code == 2:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
    else:
        got, err = run_cli(argv, capsys)
        assert got == code, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert len(line) < 700, line[:800]  # paths of tmp_path included; values are cut at 80 characters
    for text in says:
        assert text in line, line
    for text in never:
        assert text not in line, line
    assert_nothing_written(tmp_path)


def test_more_threads_than_cpus_is_a_warning(tmp_path, capsys, monkeypatch, study_yaml):
    import os

    monkeypatch.chdir(tmp_path)
    many = (os.cpu_count() or 1) + 1
    code, err = run_cli(["bench", str(tmp_path / "no-such-model"), "--threads", str(many)], capsys)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 2, err  # the warning, then the missing model
    assert lines[0].startswith("latencysolver: warning: --threads") and f"{many} threads" in lines[0], err
    assert f"{os.cpu_count()} CPUs" in lines[0]

    path = study_yaml(latency={"rows": 4, "warmup": 1, "repeats": 2, "threads": many})
    code, err = run_cli(["run", str(path), "--data", str(tmp_path / "no-such-data")], capsys)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 2, err
    assert lines[0].startswith(f"latencysolver: warning: {path}: latency.threads"), err
    assert "data folder not found" in lines[1]


@pytest.mark.parametrize(
    "command",
    [
        ["pareto"],
        ["export", "--best", "--out", "EXPORT"],
        ["report", "--out", "REPORT.html"],
        ["worker", "--no-progress"],
    ],
    ids=lambda c: c[0],
)
def test_a_plain_optuna_study_is_refused_in_one_line(tmp_path, capsys, command):
    """Issue 16: `pareto` on a study latencysolver did not create raised KeyError: 'recipe' (later a TypeError)."""
    import hashlib

    import optuna

    db = tmp_path / "plain.db"
    storage = f"sqlite:///{db}"
    study = optuna.create_study(study_name="plain", storage=storage, directions=["maximize", "maximize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=3)
    before = hashlib.md5(db.read_bytes()).hexdigest()
    args = [a.replace("EXPORT", str(tmp_path / "out")).replace("REPORT", str(tmp_path / "report")) for a in command]
    code, err = run_cli([args[0], "--study", "plain", "--storage", storage, *args[1:]], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if not line.startswith("warning:")]  # worker's SQLite warning
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "was not created by `latencysolver run`" in errors[0]
    assert hashlib.md5(db.read_bytes()).hexdigest() == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    "max_length, expected",
    [
        (129, "data.max_length: 129 tokens is more than the model takes (128 positions)"),
        (
            2,
            "data.max_length: 2 tokens cannot hold a question-passage pair: at least 5 (3 special tokens and one "
            "token of each text)",
        ),
    ],
)
def test_max_length_is_checked_against_the_model_before_anything_runs(
    tmp_path, capsys, study_yaml, synthetic_data_dir, max_length, expected
):
    """Issue 16: 100000 gave a traceback after the teacher fine-tune; 1 or 2 failed late.  The tiny test BERT has
    128 positions; a BERT pair needs [CLS] q [SEP] p [SEP]."""
    path = study_yaml(data={"source": str(synthetic_data_dir), "max_length": max_length})
    code, err = run_cli(["run", str(path), "--cache-dir", str(tmp_path / "cache"), "--no-progress"], capsys)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err == f"latencysolver: error: {path}: {expected}"
    assert_nothing_written(tmp_path)


def test_bench_max_length_is_checked_against_the_model(tiny_model_dir, capsys):
    code, err = run_cli(["bench", str(tiny_model_dir), "--max-length", "100000"], capsys)
    assert code == 1
    assert (
        err == "latencysolver: error: bench: --max-length: 100000 tokens is more than the model takes (128 positions)"
    )


@pytest.mark.parametrize("storage_case", ["folder", "other-directions"])
def test_storage_checks_come_before_the_teacher_fine_tune(tmp_path, capsys, study_yaml, storage_case):
    """Issue 16: a folder given as the database, or a stored study with other objectives, was found only after
    prepare() had fine-tuned a teacher, and left an empty study-artifacts/ folder behind."""
    import optuna

    if storage_case == "folder":
        (tmp_path / "study.db").mkdir()
        expected = "is a folder, not a database file"
    else:
        optuna.create_study(
            study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}", directions=["minimize", "minimize"]
        )
        expected = "optimizes ['minimize', 'minimize']"
    code, err = run_cli(["run", str(study_yaml()), "--cache-dir", str(tmp_path / "cache"), "--no-progress"], capsys)
    assert code == 1 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "cache" / "teachers").exists(), "a teacher was trained"
    assert not (tmp_path / "study-artifacts").exists(), "an artifact folder was created"
