"""Teacher-labelled rows built from the train rows (data/augment.py): each generator, their turns, the embedding
neighbours, the labels' cache and its copy on a worker, and which students distill on them."""

from __future__ import annotations

import json
import random
import sys
from types import SimpleNamespace

import optuna
import pytest
import torch

from latencysolver.config.study import load_study_config
from latencysolver.data.augment import (
    WINDOW,
    Vocabulary,
    _variants,
    applicable_kinds,
    augment,
    embedding_neighbours,
    sentences,
    windows,
)
from latencysolver.data.batches import EncodedSplit
from latencysolver.data.text import YES_NO, TextSplit
from latencysolver.errors import ConfigError
from latencysolver.models.augmented import label_rows
from latencysolver.models.loading import load_tokenizer
from latencysolver.models.teacher import Teacher
from latencysolver.results.records import study_record
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
    data = _longer_passages(tmp_path / "data", synthetic_data_dir)
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
    (line,) = [x for x in log if x.startswith("augment:") and "for the CNN" in x]
    extra = int(line.split()[1])
    assert 0 < extra <= 2 * 64  # at most 2 per train row of the synthetic set
    assert seen == [(64 + extra, 64 + extra)]  # the train rows, then the pairs, each with a teacher's logits
    assert len(list((tmp_path / "cache" / "logits").glob("*.pt"))) == 1  # the train rows' logits
    assert len(list((tmp_path / "cache" / "augmented").glob("*/logits.pt"))) == 1  # the pairs', in their folder
    with pytest.raises(ConfigError, match="augment must be >= 0"):
        load_study_config(study_yaml(cnn={"augment": -1}))


# ---------------------------------------------------------------------------------------------- data.augment

PASSAGE = "The cat sat on the mat. It was happy there. Dogs barked outside."
VOCAB = Vocabulary({"cat": ("dog", "kitten"), "happy": ("glad",), "mat": ("rug",)}, "[MASK]")


def _pairs(n: int = 3) -> TextSplit:
    passages = (PASSAGE, "Rivers flood in spring. Cities sleep at night.", "Music is loud. Films are long.")
    return TextSplit(
        text=tuple(f"question {i}" for i in range(n)), text_pair=passages[:n], label=(1,) * n, label_names=YES_NO
    )


def test_each_token_generator_does_what_it_says():
    rng = random.Random(0)
    kinds = ("neighbour",)
    replaced = [_variants("q", PASSAGE, 1, random.Random(s), kinds, vocabulary=VOCAB)[0] for s in range(20)]
    for text in replaced:  # only words with neighbours change, each into one of its neighbours, punctuation kept
        for old, new in zip(PASSAGE.split(), text.split(), strict=True):
            core = old.strip(".")
            assert old == new or (
                new.strip(".") in VOCAB.neighbours[core.lower()] and new.endswith(".") == old.endswith(".")
            )
    assert {"dog", "kitten", "glad", "rug."} & {w for t in replaced for w in t.split()}
    (masked,) = _variants("q", PASSAGE, 1, rng, ("mask",), vocabulary=VOCAB)
    words = masked.split()
    assert len(words) == len(PASSAGE.split()) and "[MASK]" in words
    assert all(w in ("[MASK]", o) for w, o in zip(words, PASSAGE.split(), strict=True))
    (dropped,) = _variants("q", PASSAGE, 1, rng, ("drop",))
    assert 0 < len(dropped.split()) < len(PASSAGE.split())
    left = iter(PASSAGE.split())  # the kept words, in their order
    assert all(any(w == o for o in left) for w in dropped.split())
    assert _variants("q", PASSAGE, 1, rng, ("mask",)) == []  # no mask token: nothing to mask with
    assert _variants("q", PASSAGE, 1, rng, ("neighbour",), vocabulary=Vocabulary()) == []  # no neighbours


def test_repair_pairs_a_question_with_another_rows_passage_and_kinds_take_turns():
    split = _pairs()
    rows = augment(split, 1, seed=0, kinds=("repair",))
    assert rows.text == split.text
    for question, passage in zip(rows.text, rows.text_pair or (), strict=True):
        own = split.text_pair[split.text.index(question)]  # type: ignore[index]
        assert passage in split.text_pair and passage != own  # type: ignore[operator]
    # every row starts one generator further on: with one row each per kind, three rows use three kinds
    turns = augment(split, 1, seed=0, kinds=("delete", "repair", "mask"), vocabulary=VOCAB)
    assert len(turns) == 3
    assert len(sentences(turns.text_pair[0])) == 2  # type: ignore[index]  # row 0: a sentence deleted
    assert turns.text_pair[1] in split.text_pair  # type: ignore[operator]  # row 1: another row's passage
    assert "[MASK]" in turns.text_pair[2]  # type: ignore[operator]  # row 2: masked
    assert augment(split, 4, seed=3, kinds=None, vocabulary=VOCAB) == augment(
        split, 4, seed=3, kinds=None, vocabulary=VOCAB
    )
    single = TextSplit(text=(PASSAGE,), text_pair=None, label=(0,), label_names=("a", "b"))
    assert applicable_kinds(None, pairs=False) == ("window", "delete", "shuffle", "neighbour", "mask", "drop")
    assert augment(single, 3, kinds=None, vocabulary=VOCAB).text_pair is None
    with pytest.raises(ValueError, match="unknown augmentation 'synonyms'"):
        applicable_kinds(["synonyms"], pairs=True)


def test_embedding_neighbours_are_the_nearest_whole_words_by_cosine():
    class Tokenizer:
        all_special_ids = [0]

        def get_vocab(self):
            return {"[PAD]": 0, "cat": 1, "dog": 2, "car": 3, "##s": 4, "a": 5, "kitten": 6}

    table = torch.tensor(
        [
            [9.0, 9.0],  # [PAD]: special, never a neighbour
            [1.0, 0.0],  # cat
            [0.9, 0.1],  # dog: close to cat
            [0.0, 1.0],  # car: far
            [1.0, 0.01],  # ##s: a piece, never a neighbour although the closest
            [1.0, 0.0],  # a: one letter, never a neighbour
            [0.7, 0.3],  # kitten
        ]
    )
    found = embedding_neighbours(Tokenizer(), table, {"cat", "Car", "zebra"}, k=2)
    assert found == {"cat": ("dog", "kitten"), "Car": ("kitten", "dog")}  # Car: looked up lower-cased; zebra: absent


def test_data_augment_is_checked_when_the_study_is_read(study_yaml):
    with pytest.raises(ConfigError, match=r"data.augment: augment must be >= 0, but got -1"):
        load_study_config(study_yaml(data={"source": "x", "augment": -1}))
    with pytest.raises(ConfigError, match=r"data.augment_kinds: augment_kinds must be some of .*'synonyms'"):
        load_study_config(study_yaml(data={"source": "x", "augment": 2, "augment_kinds": ["mask", "synonyms"]}))
    with pytest.raises(ConfigError, match=r"data.augment_seed: augment_seed must be in \[0, 4294967295\]"):
        load_study_config(study_yaml(data={"source": "x", "augment": 2, "augment_seed": -3}))


def test_labels_are_the_teachers_and_cached(tmp_path):
    class Fixed(torch.nn.Module):
        """A fake teacher: class 1 for rows whose first token id is even, class 0 otherwise."""

        calls = 0

        def forward(self, input_ids, attention_mask, **_):
            Fixed.calls += 1
            first = input_ids[:, 1].float()
            even = (first % 2 == 0).float()
            return SimpleNamespace(logits=torch.stack([1 - even, even], dim=-1) * 3)

    teacher = Teacher(path=tmp_path, key="fake", model=Fixed(), train_logits=torch.zeros(0, 2))
    rows = EncodedSplit(
        input_ids=((101, 4, 102), (101, 7, 102), (101, 10, 102, 5)), token_type_ids=None, labels=(0, 0, 0)
    )
    labelled = label_rows(teacher, rows, "rows-a", tmp_path, pad_id=0, progress=False, device=torch.device("cpu"))
    assert labelled.logits.argmax(dim=-1).tolist() == [1, 0, 1] and labelled.seconds is not None
    calls = Fixed.calls
    again = label_rows(teacher, rows, "rows-a", tmp_path, pad_id=0, progress=False, device=torch.device("cpu"))
    assert Fixed.calls == calls and again.seconds is None and torch.equal(again.logits, labelled.logits)
    assert again.path == labelled.path and (labelled.path / "augmented.json").is_file()
    # a copy labelling other rows is not used for these
    other = label_rows(
        teacher, rows, "rows-b", tmp_path / "b", pad_id=0, progress=False, device=torch.device("cpu"), path=again.path
    )
    assert other.path != again.path and Fixed.calls > calls


def _longer_passages(folder, source):
    """The synthetic rows, each passage two sentences longer: something to vary."""
    folder.mkdir()
    for name in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (source / f"{name}.jsonl").read_text().splitlines()]
        text = "".join(json.dumps(r | {"passage": r["passage"] + ". it rains. it shines."}) + "\n" for r in rows)
        (folder / f"{name}.jsonl").write_text(text)
    return folder


def test_every_student_distills_on_the_rows_and_a_worker_copies_their_labels(
    study_yaml, tmp_path, monkeypatch, synthetic_data_dir
):
    from latencysolver.search import students
    from latencysolver.search.run import prepare_stored

    seen: list[tuple[int, int, set[str]]] = []
    original = students.distill

    def spy(model, split, logits, *args, **kwargs):
        seen.append((len(split), logits.shape[0], set(split.input_ids)))
        return original(model, split, logits, *args, **kwargs)

    monkeypatch.setattr(students, "distill", spy)
    data = _longer_passages(tmp_path / "data", synthetic_data_dir)
    path = study_yaml(
        data={"source": str(data), "max_length": 64, "augment": 2, "augment_kinds": ["delete", "repair", "drop"]},
        search_space={"quant_dtype": "fp32", "skip_prob": 0.5},
        n_trials=1,
        early_stop={"after": None},
    )
    config = load_study_config(path)
    log: list[str] = []
    run_study(config, RunOptions(cache_dir=str(tmp_path / "cache"), progress=False), log=log.append)
    (line,) = [x for x in log if x.startswith("augment:") and "for every student" in x]
    extra = int(line.split()[1])
    assert extra == 2 * 64  # every synthetic row has two sentences to delete or drop words from
    assert any(x.startswith("augment: labelled by the teacher") for x in log)
    ((rows, logit_rows, ids),) = seen
    assert rows == logit_rows == 64 + extra
    # built from the train rows alone: no validation or test question is among them
    tokenizer = load_tokenizer(config.model)
    held_out = [json.loads(x) for n in ("validation", "test") for x in (data / f"{n}.jsonl").read_text().splitlines()]
    held_ids = {
        tuple(tokenizer(r["question"], r["passage"], truncation="only_second", max_length=64)["input_ids"])
        for r in held_out
    }
    assert not (ids & held_ids)
    study = optuna.load_study(study_name="tiny", storage=config.storage)
    shared = study_record(study).augment_artifacts
    assert shared is not None and set(shared.files) == {"augmented.json", "logits.pt"}
    # a worker with an empty cache copies the labels from the artifact store and labels nothing itself
    worker_log: list[str] = []
    _, prepared = prepare_stored(
        study, config.storage, RunOptions(cache_dir=str(tmp_path / "worker-cache"), progress=False), worker_log.append
    )
    assert any("augmented rows' labels: copied" in x for x in worker_log)
    assert not any(x.startswith("augment: labelled") for x in worker_log)
    augmented = prepared.augmented
    assert augmented is not None and augmented.path is not None
    assert augmented.path.is_relative_to(tmp_path / "worker-cache")
    (original,) = (tmp_path / "cache" / "augmented").glob("*/logits.pt")
    assert torch.equal(augmented.logits, torch.load(original))


def test_the_elastic_student_trains_on_the_augmented_rows_too(study_yaml, tmp_path, monkeypatch, synthetic_data_dir):
    from latencysolver.models import elastic
    from latencysolver.search.preparation import prepare

    seen: list[tuple[int, int]] = []
    original = elastic.train_elastic

    def spy(model, split, logits, *args, **kwargs):
        seen.append((len(split), logits.shape[0]))
        return original(model, split, logits, *args, **kwargs)

    monkeypatch.setattr(elastic, "train_elastic", spy)
    keys = []
    for rows in (0, 1):
        config = load_study_config(
            study_yaml(
                data={"source": str(synthetic_data_dir), "max_length": 64, "augment": rows, "augment_kinds": ["mask"]},
                search_space={
                    "prune_ratio": {"choices": [0.0, 0.5]},
                    "prune_kind": "structured",
                    "quant_dtype": "fp32",
                },
                trial_mode="elastic",
                elastic={"steps": 1, "batch_size": 8, "random_subnetworks": 0, "importance": "magnitude"},
            )
        )
        options = RunOptions(cache_dir=str(tmp_path / "cache"), progress=False)
        prepared = prepare(config, options, log=lambda _: None)
        assert prepared.elastic is not None
        keys.append(prepared.elastic.key)
    assert seen == [(64, 64), (128, 128)]  # the 64 train rows, then with one masked copy of each
    assert keys[0] != keys[1]  # cached apart


def test_the_small_students_benchmark_resumes_without_repeating_a_run(
    study_yaml, tmp_path, monkeypatch, synthetic_data_dir
):
    from tests.conftest import load_benchmark

    bench = load_benchmark("small_students")
    path = study_yaml(data={"source": str(_longer_passages(tmp_path / "data", synthetic_data_dir)), "max_length": 64})
    argv = [
        "small_students.py", "--config", str(path), "--data", str(tmp_path / "data"), "--recipes", "3",
        "--settings", "today,both", "--seeds", "0,1", "--steps", "2", "--augment", "1",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted((r["setting"], r["seed"]) for r in first["runs"]) == [
        ("both", 0),
        ("both", 1),
        ("today", 0),
        ("today", 1),
    ]
    assert {r["augment"] for r in first["runs"] if r["setting"] == "both"} == {1}
    assert {r["layer_weight"] for r in first["runs"] if r["setting"] == "today"} == {0.0}
    bench.main()  # everything is there: nothing runs again
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"] == first["runs"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| 2 layers, prune 0.5, ORT int8 (the smallest) |" in table and "| both | 2 | 2 |" in table
    argv[argv.index("--steps") + 1], argv[argv.index("--seeds") + 1] = "3", "0"
    bench.main()  # another budget: its row joins the table, the first budget's rows stay
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| both | 2 | 2 |" in table and "| today | 2 | 2 |" in table
    assert "| both | 3 | 1 |" in table and "| today | 3 | 1 |" in table
