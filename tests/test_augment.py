"""Issue 20, item 2: teacher-labelled pairs built from the train rows (passage windows, sentence deletion and
shuffling), cached, and added to the CNN's distillation only."""

from __future__ import annotations

import json
import random

import pytest

from latencysolver.config.study import load_study_config
from latencysolver.data.augment import WINDOW, _variants, augment, sentences, windows
from latencysolver.data.text import TextSplit
from latencysolver.errors import ConfigError
from latencysolver.search.preparation import RunOptions
from latencysolver.search.run import run_study

LONG = " ".join(f"w{i}" for i in range(100)) + " the river floods. the city sleeps! is music loud? yes."


def test_windows_put_the_questions_words_first():
    cut = windows("does the river flood in the city", LONG)
    assert all(len(w.split()) == WINDOW for w in cut)
    assert "river" in cut[0] and "city" in cut[0]  # the window with the question's words leads
    words = LONG.split()  # 115 words: starts 0, 24, 48 and the tail's 67, so every word is in some window
    assert len(cut) == 4 and any(w.split()[-1] == words[-1] for w in cut)
    assert windows("q", "too short to cut") == []


def test_the_kinds_take_turns_and_skip_what_cannot_apply():
    rng = random.Random(0)
    varied = _variants("does the river flood", LONG, 4, rng)
    assert len(varied) == 4
    assert len(varied[0].split()) == WINDOW  # a window
    assert len(sentences(varied[1])) == len(sentences(LONG)) - 1  # one sentence deleted
    assert sorted(sentences(varied[2])) == sorted(sentences(LONG)) and varied[2] != LONG  # shuffled
    short = "one. two. three."
    assert all(len(v.split()) < WINDOW for v in _variants("q", short, 3, random.Random(0)))  # no window to cut
    assert _variants("q", "a single sentence", 3, random.Random(0)) == []  # nothing to vary


def test_augment_keeps_the_question_and_is_seeded():
    split = TextSplit(text=("q1", "q2"), text_pair=(LONG, "a. b. c."), label=(0, 1), label_names=("no", "yes"))
    rows = augment(split, 3, seed=1)
    assert rows.text == ("q1",) * 3 + ("q2",) * 3 and rows.label == (0,) * 3 + (1,) * 3
    assert rows == augment(split, 3, seed=1) and rows != augment(split, 3, seed=2)
    single = TextSplit(text=(LONG,), text_pair=None, label=(1,), label_names=("a", "b"))
    assert augment(single, 2).text_pair is None and len(augment(single, 2).text) == 2
    with pytest.raises(ValueError, match="factor must be >= 1"):
        augment(split, 0)


def test_a_cnn_study_distills_on_the_train_rows_and_the_labelled_pairs(
    study_yaml, tmp_path, monkeypatch, synthetic_data_dir
):
    from latencysolver.search import students

    seen = []
    original = students.distill

    def spy(model, split, logits, *args, **kwargs):
        seen.append((len(split), logits.shape[0]))
        return original(model, split, logits, *args, **kwargs)

    monkeypatch.setattr(students, "distill", spy)
    data = tmp_path / "data"  # the synthetic rows, each passage two sentences longer: something to vary
    data.mkdir()
    for name in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (synthetic_data_dir / f"{name}.jsonl").read_text().splitlines()]
        text = "".join(json.dumps(r | {"passage": r["passage"] + ". it rains. it shines."}) + "\n" for r in rows)
        (data / f"{name}.jsonl").write_text(text)
    space = {"architecture": "cnn", "quant_dtype": "fp32"}
    cnn = {"embed_dim": 16, "channels": 8, "kernel_sizes": [3], "augment": 2}
    path = study_yaml(
        data={"source": str(data), "max_length": 64},
        search_space=space,
        cnn=cnn,
        cnn_distillation={"steps": 2, "batch_size": 8},
        n_trials=1,
        early_stop={"after": None},
    )
    log: list[str] = []
    run_study(load_study_config(path), RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=log.append)
    (line,) = [x for x in log if x.startswith("augment:")]
    extra = int(line.split()[1])
    assert 0 < extra <= 2 * 64  # at most 2 per train row of the synthetic set
    assert seen == [(64 + extra, 64 + extra)]  # the train rows, then the pairs, each with a teacher's logits
    assert len(list((tmp_path / "cache" / "logits").glob("*.pt"))) == 2  # train rows and pairs, cached apart
    with pytest.raises(ConfigError, match="augment must be >= 0"):
        load_study_config(study_yaml(cnn={"augment": -1}))
