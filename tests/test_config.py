"""Study and search-space YAML: the repo's own files load into typed objects; bad input fails with one line
that names the file, the dotted key and the value."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml

from latencysolver.config.space import (
    Choices,
    Fixed,
    FloatRange,
    IntRange,
    SearchSpace,
    load_search_space,
    parse_search_space,
)
from latencysolver.config.study import StudyConfig, load_study_config
from latencysolver.config.training import TrainConfig, check_trial_mode
from latencysolver.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------------------
# The repo's own files
# --------------------------------------------------------------------------------------------------------------


def test_repo_quick_study_loads_typed():
    path = REPO / "studies" / "boolq-quick.yaml"
    config = load_study_config(path)
    assert isinstance(config, StudyConfig)
    assert config.name == "boolq-quick"
    assert config.config_file == str(path)
    assert config.n_trials == 11  # the 3 usual recipes and 8 searched trials
    assert config.sampler.name == "tpe" and config.sampler.seed == 0
    assert config.data.source == "google/boolq" and config.data.max_length == 256
    assert isinstance(config.teacher, TrainConfig) and isinstance(config.distillation, TrainConfig)
    assert config.teacher.epochs == 3.0 and isinstance(config.teacher.epochs, float)
    assert config.teacher.learning_rate == pytest.approx(5e-5)
    assert config.distillation.steps == 80 and config.distillation.learning_rate == pytest.approx(1e-4)
    assert (config.latency.threads, config.latency.rows, config.latency.warmup, config.latency.repeats) == (2, 32, 1, 3)
    # search_space: ../search_spaces/quick.yaml is relative to the study file, not to the working directory
    assert config.search_space == load_search_space(REPO / "search_spaces" / "quick.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_repo_study_loads_with_its_space(path):
    config = load_study_config(path)
    assert config.name == path.stem  # each file is named for the study it makes
    assert config.n_trials >= 1 and config.distillation.steps >= 1


def test_the_narrowed_pareto_space_differs_from_the_benchmarks_only_in_prune_and_alpha():
    wide = load_study_config(REPO / "studies" / "boolq-pareto.yaml")
    narrow = load_study_config(REPO / "studies" / "boolq-pareto-narrowed.yaml")
    assert narrow.search_space.prune_ratio == FloatRange(0.0, 0.4, 0.1, False)
    assert narrow.search_space.alpha == FloatRange(0.6, 1.0, None, False)
    same = {f.name for f in dataclasses.fields(SearchSpace)} - {"prune_ratio", "alpha"}
    assert {k: getattr(narrow.search_space, k) for k in same} == {k: getattr(wide.search_space, k) for k in same}
    # the rest of the study (teacher, distillation budget, latency protocol) is the benchmark's
    assert (narrow.teacher, narrow.distillation, narrow.latency) == (wide.teacher, wide.distillation, wide.latency)


def test_study_search_space_path_is_relative_to_the_study_file(tmp_path, monkeypatch):
    (tmp_path / "studies").mkdir()
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "s.yaml").write_text("prune_ratio: {choices: [0.0, 0.3]}\n")
    study = tmp_path / "studies" / "s.yaml"
    study.write_text("search_space: ../spaces/s.yaml\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative path must not be resolved against the cwd
    config = load_study_config(study)
    assert config.name == "s"  # defaults to the file's stem
    assert config.search_space.prune_ratio == Choices((0.0, 0.3))
    assert config.search_space.quant_dtype == Fixed("fp32")  # knobs not mentioned stay at their default


def test_repo_quick_search_space_knob_types():
    space = load_search_space(REPO / "search_spaces" / "quick.yaml")
    assert isinstance(space, SearchSpace)
    assert space.architecture == Fixed("transformer")
    assert space.prune_ratio == Choices((0.0, 0.25, 0.5))
    assert space.prune_kind == Fixed("structured")
    assert space.quant_dtype == Choices(("fp32", "bf16", "int8", "ort-int8"))
    assert space.skip_prob == Choices((0.0, 0.34, 0.5))
    assert space.skip_mode == Fixed("deterministic")
    assert space.rank == Choices(("off", 128))
    assert space.temperature == FloatRange(1.0, 6.0, None, True)
    assert space.alpha == FloatRange(0.3, 0.9, None, False)


def test_repo_full_search_space_knob_types():
    space = load_search_space(REPO / "search_spaces" / "full.yaml")
    assert space.prune_ratio == FloatRange(0.0, 0.6, 0.1, False)
    assert space.quant_dtype == Choices(("fp32", "bf16", "fp16", "int8", "ort-fp32", "ort-int8"))
    assert isinstance(space.skip_prob, FloatRange) and space.skip_prob.step == pytest.approx(0.167)
    assert space.skip_mode == Choices(("deterministic", "stochastic"))
    assert space.rank == Choices(("off", 64, 128, 0.25, 0.5))
    assert [type(v) for v in space.rank.values[1:]] == [int, int, float, float]  # absolute ranks, fractions
    assert space.temperature == FloatRange(1.0, 8.0, None, True)
    assert space.alpha == FloatRange(0.2, 0.9, None, False)


def test_int_range_for_rank():
    space = parse_search_space({"rank": {"low": 32, "high": 128, "step": 32}}, "x.yaml")
    assert space.rank == IntRange(32, 128, 32, False)


# --------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, the dotted key and the value
# --------------------------------------------------------------------------------------------------------------

GOOD_SPACE = "prune_ratio: {choices: [0.0, 0.5]}\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _study(tmp_path: Path, extra: str, name: str = "bad-study.yaml") -> Path:
    _write(tmp_path, "space.yaml", GOOD_SPACE)
    return _write(tmp_path, name, "search_space: space.yaml\n" + textwrap.dedent(extra))


def _error(load, path: Path, *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message.strip(), f"message is not one line: {message!r}"
    assert message.strip() == message
    for needle in (path.name, *needles):
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(
        tmp_path,
        "broken.yaml",
        """\
        name: x
        sampler: {name: tpe, seed: 0
        n_trials: 3
        """,
    )
    _error(load_study_config, path, "malformed YAML", "line 3")


def test_malformed_search_space_yaml(tmp_path):
    path = _write(tmp_path, "space-broken.yaml", "alpha: {low: 0.1\nrank: [1, 2\n")
    _error(load_search_space, path, "malformed YAML", "line ")


def test_unknown_top_level_key(tmp_path):
    path = _study(tmp_path, "n_trails: 5\n")
    message = _error(load_study_config, path, "n_trails", "unknown key")
    assert "n_trials" in message  # the allowed keys are listed


def test_unknown_key_in_nested_block(tmp_path):
    path = _study(tmp_path, "distillation:\n  stepz: 10\n")
    _error(load_study_config, path, "distillation.stepz", "unknown key")


def test_wrong_type_nested(tmp_path):
    path = _study(tmp_path, "distillation:\n  steps: ten\n")
    _error(load_study_config, path, "distillation.steps", "'ten'", "integer")


def test_wrong_literal_value(tmp_path):
    path = _study(tmp_path, "sampler: {name: grid}\n")
    _error(load_study_config, path, "sampler.name", "'grid'")


def test_negative_n_trials(tmp_path):
    path = _study(tmp_path, "n_trials: -3\n")
    _error(load_study_config, path, "n_trials", "-3")


def test_tpe_startup_trials_reach_the_sampler(tmp_path):
    from latencysolver.search.suggest import make_sampler

    path = _study(tmp_path, "sampler: {name: tpe, seed: 1, startup_trials: 4}\n")
    config = load_study_config(path)
    assert config.sampler.startup_trials == 4
    assert make_sampler(config)._n_startup_trials == 4
    default = load_study_config(_study(tmp_path, "sampler: {name: tpe}\n"))
    assert make_sampler(default)._n_startup_trials == 10  # Optuna's own default
    _error(
        load_study_config, _study(tmp_path, "sampler: {name: tpe, startup_trials: 0}\n"), "sampler.startup_trials", "0"
    )


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_an_out_of_range_sampler_seed_is_refused(tmp_path, seed):
    # NumPy seeds are in [0, 2**32): -1 crashed `run` in the sampler, and 2**32 - 1 + a worker's pid crashed `worker`
    path = _study(tmp_path, f"sampler: {{name: tpe, seed: {seed}}}\n")
    _error(load_study_config, path, "sampler.seed", str(seed), "[0, 4294967295]")


def test_the_largest_seed_still_gives_every_worker_a_valid_seed(tmp_path):
    from latencysolver.search.suggest import make_sampler, run_seed

    config = load_study_config(_study(tmp_path, f"sampler: {{name: tpe, seed: {2**32 - 1}}}\n"))
    for trials, offset in ((0, 0), (0, 4_194_304), (17, 99_999)):
        seed = run_seed(config.sampler.seed, trials, offset)
        assert seed is not None and 0 <= seed < 2**32
        sampler = config.sampler
        make_sampler(dataclasses.replace(config, sampler=dataclasses.replace(sampler, seed=seed)))  # NumPy accepts


# Every numeric field of every block, against what its consumer takes: refused when the file is read, not by a
# trial that FAILs later (seeds: torch.manual_seed / random.Random / NumPy; waits: time.sleep; threads: a C int).
BAD_FIELDS = [
    ("n_trials", 0),
    ("data.max_length", 0),
    ("data.limit_train", -1),
    ("data.labels", ["yes", ""]),
    ("data.labels", ["yes", "   "]),
    ("data.labels", ["yes", "yes"]),
    ("sampler.seed", -1),
    ("sampler.seed", 2**32),
    ("sampler.startup_trials", 0),
    ("teacher.seed", -1),
    ("teacher.seed", 2**32),
    ("teacher.weight_decay", -0.1),
    ("teacher.epochs", 0),
    ("teacher.learning_rate", -1.0e-4),
    ("teacher.warmup_ratio", 1.0),
    ("distillation.seed", 2**64),
    ("distillation.weight_decay", -0.01),
    ("distillation.batch_size", 0),
    ("cnn_distillation.seed", -3),
    ("cnn_distillation.weight_decay", -1.0),
    ("elastic.seed", 2**32),
    ("elastic.weight_decay", -0.5),
    ("elastic.random_subnetworks", -1),
    ("elastic.epochs", 0),
    ("elastic.steps", 0),
    ("elastic.width_first", 1.5),
    ("elastic.temperature", 0.0),
    ("latency.seed", -1),
    ("latency.seed", 2**32),
    ("latency.threads", 0),
    ("latency.threads", 2**31),
    ("latency.rows", 0),
    ("latency.warmup", -1),
    ("latency.repeats", 0),
    ("latency.throughput_batch_size", 0),
    ("latency.max_speedup_cv", 0.0),
    ("latency.remeasure_attempts", -1),
    ("latency.remeasure_wait_s", -1.0),
    ("latency.remeasure_wait_s", 5.0e9),  # doubled once by the second of 2 attempts: past time.sleep's limit
    ("cnn.embed_dim", 0),
    ("cnn.dropout", 1.0),
    ("cnn.representation_weight", -0.5),
    ("cnn.augment", -1),
    ("constraints.min_accuracy", 1.5),
    ("constraints.max_latency_ms", 0.0),
    ("constraints.min_speedup", -1.0),
    ("early_stop.after", 1.0),
    ("early_stop.rows", 0),
    ("early_stop.reduction_factor", 1),
    ("early_stop.min_trials", 0),
    ("workers.heartbeat_interval", 10**10),
    ("workers.grace_period", 10**10),
    ("workers.max_retry", -1),
]


@pytest.mark.parametrize("key, value", BAD_FIELDS, ids=[f"{k}={v!r}" for k, v in BAD_FIELDS])
def test_every_numeric_field_is_checked_when_the_file_is_read(tmp_path, key, value):
    from latencysolver.errors import shown

    *blocks, name = key.split(".")
    raw: dict = {name: value}
    for block in reversed(blocks):
        raw = {block: raw}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"search_space": {}, **raw}))
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert (info.value.file, info.value.key) == (str(path), key)
    bad = value if not isinstance(value, list) else next(v for v in value if not v.strip() or value.count(v) > 1)
    assert shown(bad) in message or shown(value) in message, message


def test_the_bounds_let_the_extremes_through(tmp_path):
    """The largest seed, the largest C int of threads, the longest wait: each still loads."""
    path = tmp_path / "study.yaml"
    top = {"seed": 2**32 - 1}
    path.write_text(
        yaml.safe_dump(
            {
                "search_space": {},
                **{block: top for block in ("teacher", "distillation", "cnn_distillation", "elastic", "sampler")},
                "latency": {**top, "threads": 2**31 - 1, "remeasure_wait_s": 4.0e9, "remeasure_attempts": 2},
                "data": {"labels": ["no", "yes"]},
            }
        )
    )
    config = load_study_config(path)
    assert config.teacher.seed == config.latency.seed == config.elastic.seed == 2**32 - 1


def test_nested_range_check_names_the_dotted_key(tmp_path):
    path = _study(tmp_path, "teacher: {warmup_ratio: 1.5}\n")
    _error(load_study_config, path, "teacher.warmup_ratio", "1.5")


def test_missing_search_space_file(tmp_path):
    path = _write(tmp_path, "study-nospace.yaml", "search_space: ../nowhere/missing-space.yaml\n")
    _error(load_study_config, path, "search_space", "missing-space.yaml", "not found")


def test_missing_study_file(tmp_path):
    _error(load_study_config, tmp_path / "no-such-study.yaml", "not found")


def test_unknown_knob(tmp_path):
    path = _write(tmp_path, "space-unknown.yaml", "prune_rate: 0.3\n")
    message = _error(load_search_space, path, "prune_rate", "unknown knob")
    assert "prune_ratio" in message  # the known knobs are listed


@pytest.mark.parametrize(
    "text, needles",
    [
        ("alpha: {low: 0.8, high: 0.2}\n", ("alpha", "empty range", "0.8", "0.2")),
        ("rank: {low: 128, high: 64}\n", ("rank", "empty range", "128", "64")),
        ("quant_dtype: {choices: []}\n", ("quant_dtype.choices", "empty")),
        ("quant_dtype: {choices: [int4]}\n", ("quant_dtype.choices", "'int4'")),
        ("quant_dtype: int4\n", ("quant_dtype", "'int4'")),
        ("prune_ratio: 1.5\n", ("prune_ratio", "1.5")),
        ("prune_ratio: {low: 0.0, high: 1.5}\n", ("prune_ratio.high", "1.5")),
        ("rank: {choices: [0]}\n", ("rank.choices", "0")),
        ('rank: {choices: ["off", -4]}\n', ("rank.choices", "-4")),
        ("alpha: {low: 0.0, high: 0.5, log: true}\n", ("alpha.low", "log", "0.0")),
        ("temperature: {low: -1.0, high: 4.0, log: true}\n", ("temperature.low", "-1.0")),
        ("temperature: {low: 1.0, high: 4.0, lgo: true}\n", ("temperature.lgo", "unknown key")),
        ("alpha: {low: 0.1, high: 0.5, step: 0.1, log: true}\n", ("alpha", "step", "log")),
        ("skip_mode: {choices: [random]}\n", ("skip_mode.choices", "'random'")),
        ("hidden_weight: -0.5\n", ("hidden_weight", "-0.5", ">= 0")),
        ("hidden_weight: {low: -1.0, high: 2.0}\n", ("hidden_weight.low", "-1.0")),
    ],
    ids=[
        "range-low>high",
        "int-range-low>high",
        "empty-choices",
        "choice-int4",
        "fixed-int4",
        "prune-1.5",
        "range-high-1.5",
        "rank-0",
        "rank-negative",
        "log-low-0",
        "log-low-negative",
        "range-unknown-key",
        "step-and-log",
        "skip-mode",
        "hidden-negative",
        "hidden-range-negative",
    ],
)
def test_bad_search_space(tmp_path, text, needles):
    path = _write(tmp_path, "space-bad.yaml", text)
    _error(load_search_space, path, *needles)


def test_bad_inline_search_space_in_study(tmp_path):
    path = _write(tmp_path, "inline.yaml", "search_space:\n  prune_ratio: 1.5\n")
    _error(load_study_config, path, "search_space", "prune_ratio", "1.5")


def test_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML 1.1 reads 5e-5 (no dot) as the string '5e-5'; the config accepts it as the number meant.
    assert yaml.safe_load("x: 5e-5")["x"] == "5e-5"
    path = _study(tmp_path, "distillation: {learning_rate: 5e-5}\nteacher: {learning_rate: 3e-4}\n", "exp.yaml")
    config = load_study_config(path)
    assert config.distillation.learning_rate == pytest.approx(5e-5)
    assert isinstance(config.distillation.learning_rate, float)
    assert config.teacher.learning_rate == pytest.approx(3e-4)
    space = parse_search_space(yaml.safe_load("temperature: {low: 5e-1, high: 4}\nalpha: 5e-1\n"), "s.yaml")
    assert space.temperature == FloatRange(0.5, 4.0, None, False)
    assert space.alpha == Fixed(0.5)


def test_non_numeric_string_is_still_rejected_for_a_float(tmp_path):
    path = _study(tmp_path, "distillation: {learning_rate: fast}\n")
    _error(load_study_config, path, "distillation.learning_rate", "'fast'")


def test_overrides_apply_after_validation(tmp_path):
    path = _study(tmp_path, "n_trials: 4\n")
    config = load_study_config(path, n_trials=7, data="./somewhere", storage="sqlite:///x.db")
    assert (config.n_trials, config.data.source, config.storage) == (7, "./somewhere", "sqlite:///x.db")
    with pytest.raises(ConfigError, match="--trials"):
        load_study_config(path, n_trials=0)


# --------------------------------------------------------------------------------------------------------------
# to_dict round trip
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quick.yaml", "full.yaml", "elastic.yaml"])
def test_to_dict_round_trips_repo_spaces(name):
    space = load_search_space(REPO / "search_spaces" / name)
    as_dict = space.to_dict()
    assert set(as_dict) == {
        "architecture",
        "prune_ratio",
        "prune_kind",
        "quant_dtype",
        "skip_prob",
        "skip_mode",
        "rank",
        "temperature",
        "alpha",
        "hidden_weight",
        "attention_weight",
        "max_tokens",
        "recovery_steps",
    }
    assert parse_search_space(as_dict, "round-trip") == space
    # and through YAML text, as a user would copy it into a file
    assert parse_search_space(yaml.safe_load(yaml.safe_dump(as_dict)), "round-trip") == space


def test_to_dict_round_trips_every_knob_kind():
    space = SearchSpace(
        prune_ratio=FloatRange(0.0, 0.5, 0.1, False),
        quant_dtype=Fixed("int8"),
        skip_prob=Choices((0.0, 0.5)),
        skip_mode=Choices(("deterministic", "stochastic")),
        rank=IntRange(16, 64, 16, False),
        temperature=FloatRange(1.0, 8.0, None, True),
        alpha=Fixed(0.7),
    )
    assert parse_search_space(space.to_dict(), "round-trip") == space
    assert SearchSpace().to_dict()["quant_dtype"] == "fp32"
    assert parse_search_space(SearchSpace().to_dict(), "defaults") == SearchSpace()


# --------------------------------------------------------------------------------------------------------------
# Edge cases that once crashed with a raw TypeError or broke the to_dict round trip
# --------------------------------------------------------------------------------------------------------------


def test_to_dict_round_trips_a_log_int_range():
    space = parse_search_space({"rank": {"low": 16, "high": 256, "log": True}}, "x.yaml")
    assert parse_search_space(space.to_dict(), "round-trip") == space


def test_rank_range_with_off_is_a_config_error():
    with pytest.raises(ConfigError, match="rank"):
        parse_search_space({"rank": {"low": "off", "high": 128}}, "x.yaml")


def test_unknown_keys_of_mixed_types_are_a_config_error(tmp_path):
    path = _write(tmp_path, "mixed.yaml", "prune_rate: 0.1\n1: 2\n")
    _error(load_search_space, path, "unknown knob")


def test_rank_takes_absolute_ranks_or_fractions():
    space = parse_search_space({"rank": {"choices": ["off", 64, 0.25]}}, "s.yaml")
    assert space.rank.values == ("off", 64, 0.25)
    assert isinstance(parse_search_space({"rank": {"low": 0.1, "high": 0.5}}, "s.yaml").rank, FloatRange)
    assert isinstance(parse_search_space({"rank": {"low": 16, "high": 128, "step": 16}}, "s.yaml").rank, IntRange)
    with pytest.raises(ConfigError, match=r"s.yaml: rank: a rank range is either absolute .*low=0.5, high=8"):
        parse_search_space({"rank": {"low": 0.5, "high": 8}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"s.yaml: rank.choices: expected each choice to be .*got 1.5"):
        parse_search_space({"rank": {"choices": [1.5]}}, "s.yaml")


def test_new_knobs_name_their_allowed_values():
    space = parse_search_space(
        {
            "architecture": {"choices": ["transformer", "cnn"]},
            "prune_kind": "structured",
            "quant_dtype": {"choices": ["ort-int8", "int8"]},
        },
        "s.yaml",
    )
    assert space.architecture.values == ("transformer", "cnn") and space.prune_kind.value == "structured"
    with pytest.raises(ConfigError, match=r"s.yaml: architecture: expected one of .*'cnn'.*got 'lstm'"):
        parse_search_space({"architecture": "lstm"}, "s.yaml")
    with pytest.raises(ConfigError, match=r"s.yaml: quant_dtype.choices: .*got 'ort-fp16'"):
        parse_search_space({"quant_dtype": {"choices": ["ort-fp16"]}}, "s.yaml")


# --------------------------------------------------------------------------------------------------------------
# Hostile YAML (issue 16): alias bombs, long values
# --------------------------------------------------------------------------------------------------------------

# nine levels of nine aliases: 9**9 (387 million) strings once expanded, in about 500 bytes
ALIAS_BOMB = (
    "n_trials: ["
    + ", ".join([f"&l0 [{', '.join(['lol'] * 9)}]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)])
    + "]\n"
)


def _load_in_a_child(path: Path, loader: str = "load_study_config") -> str:
    """Load ``path`` in a child process with 1 GB of address space and 60 s; its stdout: the error or 'loaded'."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        f"from latencysolver.config.study import {loader} as load\n"
        "from latencysolver.errors import ConfigError\n"
        "try:\n"
        "    load(sys.argv[1])\n"
        "except ConfigError as exc:\n"
        "    print(str(exc)[:2000])\n"
        "else:\n"
        "    print('loaded')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("where", ["study", "search space"])
def test_alias_bomb_is_refused_fast(tmp_path, where):
    import time

    if where == "study":
        path = _study(tmp_path, ALIAS_BOMB)
        loader = "load_study_config"
    else:
        path = _write(tmp_path, "space.yaml", "temperature: 2.0\n" + ALIAS_BOMB.replace("n_trials", "alpha"))
        loader = "load_search_space"
    assert path.stat().st_size < 600
    start = time.monotonic()
    message = _load_in_a_child(path, loader)
    assert time.monotonic() - start < 20  # the child's start-up included; the refusal itself is instant
    assert message.startswith(f"{path}: "), message
    assert "alias" in message and "\n" not in message and len(message) < 300, message


def test_recursive_alias_is_refused(tmp_path):
    path = _study(tmp_path, "n_trials: &a [1, *a]\n")
    _error(load_study_config, path, "recursive alias")


def test_a_shallower_bomb_does_not_print_megabytes(tmp_path):
    # 9**6 (531,441) strings: past the bound too; before, a 3.5 MB "one-line" message
    levels = [f"&l0 [{', '.join(['lol'] * 9)}]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 6)]
    path = _study(tmp_path, f"n_trials: [{', '.join(levels)}]\n")
    message = _load_in_a_child(path)
    assert len(message) < 300, message[:300]


@pytest.mark.parametrize(
    "extra, key",
    [
        ("n_trials: " + "x" * 100_000 + "\n", "n_trials"),
        ("sampler: {name: " + "y" * 5000 + "}\n", "sampler.name"),
        ("latency: " + "[" + ", ".join(["12345"] * 3000) + "]\n", "latency"),
        ("cnn: {kernel_sizes: [" + ", ".join(["4"] * 3000) + "]}\n", "cnn.kernel_sizes"),
    ],
    ids=["string", "literal", "list", "field-check"],
)
def test_a_long_value_is_shown_truncated(tmp_path, extra, key):
    path = _study(tmp_path, extra)
    message = _error(load_study_config, path, key)
    assert len(message) < 250, message[:400]
    assert "..." in message


def test_a_long_value_in_a_search_space_is_shown_truncated(tmp_path):
    path = _write(tmp_path, "space.yaml", "alpha: " + "z" * 10_000 + "\n")
    message = _error(load_search_space, path, "alpha")
    assert len(message) < 250, message[:400]


@pytest.mark.parametrize(
    "extra, key, line, first",
    [
        ("n_trials: 3\nsampler: {name: tpe}\nn_trials: 30\n", "n_trials", 4, 2),
        ("distillation:\n  steps: 10\n  batch_size: 8\n  steps: 1000\n", "steps", 5, 3),
        ("sampler: {name: tpe, seed: 1, seed: 2}\n", "seed", 2, 2),
    ],
    ids=["top-level", "nested", "flow"],
)
def test_duplicate_keys_are_an_error(tmp_path, extra, key, line, first):
    # issue 16: the last one silently won
    path = _study(tmp_path, extra)
    message = _error(load_study_config, path, f"duplicate key '{key}'", f"line {line}", f"first at line {first}")
    assert message.startswith(f"{path}: ")


def test_duplicate_key_in_a_search_space_file(tmp_path):
    path = _write(tmp_path, "space.yaml", "alpha: 0.5\ntemperature: 2.0\nalpha: 0.9\n")
    _error(load_search_space, path, "duplicate key 'alpha'", "line 3")


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = _study(tmp_path, "teacher: &t {steps: 10, batch_size: 8}\ndistillation: {<<: *t, steps: 20}\n", "s.yaml")
    config = load_study_config(path)
    assert config.distillation.steps == 20 and config.distillation.batch_size == 8


def test_non_utf8_study_file_names_file_and_line(tmp_path):
    path = _study(tmp_path, "name: caf\xe9\n")
    path.write_bytes(path.read_bytes().replace("caf\xe9".encode(), b"caf\xe9"))  # latin-1, not UTF-8
    _error(load_study_config, path, "not UTF-8", "line 2")


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")], ids=["lists", "mappings"])
def test_deeply_nested_yaml_is_one_line(tmp_path, opening, closing):
    # issue 16: a RecursionError of 3,000 lines
    path = _study(tmp_path, "n_trials: " + opening * 5000 + "1" + closing * 5000 + "\n")
    message = _error(load_study_config, path, "nested")
    assert len(message) < 300


def test_a_folder_given_as_the_study_file_is_named_a_folder(tmp_path):
    # issue 16: "file not found" for a path that is there, but a folder
    folder = tmp_path / "studies"
    folder.mkdir()
    message = _error(load_study_config, folder, "is a folder, not a YAML file")
    assert "not found" not in message


def test_a_folder_given_as_the_search_space_is_named_a_folder(tmp_path):
    (tmp_path / "spaces").mkdir()
    path = _write(tmp_path, "s.yaml", "search_space: spaces\n")
    message = _error(load_study_config, path, "search_space", "is a folder, not a YAML file")
    assert "not found" not in message


@pytest.mark.parametrize("zero", [0, {"low": 0, "high": 0}, {"choices": [0]}])
def test_a_per_trial_study_takes_recovery_steps_written_as_zero_any_way(zero):
    check_trial_mode("per-trial", parse_search_space({"recovery_steps": zero}, "space.yaml"))


def test_a_per_trial_study_refuses_recovery_steps_above_zero():
    space = parse_search_space({"recovery_steps": {"low": 0, "high": 10}}, "space.yaml")
    with pytest.raises(ConfigError, match="recovery_steps is the recovery distillation of trial_mode: elastic"):
        check_trial_mode("per-trial", space)
