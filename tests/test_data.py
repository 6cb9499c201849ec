"""BoolQ loading (local jsonl/parquet folders, the hub, the shared split) and the encoded/batched form of it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from latencysolver.data.batches import EncodedSplit, encode_split, eval_batches, train_batches
from latencysolver.data.text import TextData, TextSplit, load_data
from latencysolver.errors import DataError

try:  # tests/ is a package in some checkouts, a plain folder of modules in others
    from tests.conftest import SHARED_DATA, write_synthetic_boolq
except ImportError:  # pragma: no cover
    from conftest import SHARED_DATA, write_synthetic_boolq

ROWS = {"train": 64, "validation": 24, "test": 24}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test here may reach the network: name lookups fail at once instead of waiting on a resolver.

    ``datasets.load_dataset`` pings S3 ("download counts") even for local files unless told not to; that is
    switched off here so the tests stay fast (see ``test_local_folder_makes_no_network_request``).
    """
    import socket

    import datasets.config

    def refuse(*args, **kwargs):
        raise OSError(f"network access in a test: getaddrinfo{args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _one_line_error(source: str, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        load_data(source)
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------------------------------------------
# Local folders
# --------------------------------------------------------------------------------------------------------------


def test_local_jsonl_folder(synthetic_data_dir):
    data = load_data(str(synthetic_data_dir))
    assert isinstance(data, TextData) and data.source == str(synthetic_data_dir)
    assert (len(data.train), len(data.validation), len(data.test)) == (64, 24, 24)
    for split, name in ((data.train, "train"), (data.validation, "validation"), (data.test, "test")):
        rows = _read_jsonl(synthetic_data_dir / f"{name}.jsonl")
        assert isinstance(split, TextSplit)
        assert split.label_names == ("no", "yes") and split.boolq
        assert split.label == tuple(int(r["label"]) for r in rows)
        assert split.text == tuple(r["question"] for r in rows)  # original order is kept
        assert split.text_pair == tuple(r["passage"] for r in rows)
        assert split.title == tuple(r["title"] for r in rows)
    assert 0 < sum(data.train.label) < len(data.train)  # both classes present


def test_fingerprints_are_stable_and_content_sensitive(synthetic_data_dir, tmp_path):
    first, second = load_data(str(synthetic_data_dir)), load_data(str(synthetic_data_dir))
    assert first.fingerprint() == second.fingerprint()
    assert first.train.fingerprint() == second.train.fingerprint()
    assert first.train.fingerprint() != first.validation.fingerprint()

    changed = tmp_path / "changed"
    shutil.copytree(synthetic_data_dir, changed)
    rows = _read_jsonl(changed / "train.jsonl")
    rows[10]["passage"] += " extra"
    _write_jsonl(changed / "train.jsonl", rows)
    other = load_data(str(changed))
    assert other.train.fingerprint() != first.train.fingerprint()
    assert other.validation.fingerprint() == first.validation.fingerprint()
    assert other.fingerprint() != first.fingerprint()

    flipped = tmp_path / "flipped"
    shutil.copytree(synthetic_data_dir, flipped)
    rows = _read_jsonl(flipped / "validation.jsonl")
    rows[0]["label"] = not rows[0]["label"]
    _write_jsonl(flipped / "validation.jsonl", rows)
    assert load_data(str(flipped)).fingerprint() != first.fingerprint()


def test_limits_keep_the_first_rows(synthetic_data_dir):
    full = load_data(str(synthetic_data_dir))
    data = load_data(str(synthetic_data_dir), limit_train=10, limit_validation=5, limit_test=3)
    assert (len(data.train), len(data.validation), len(data.test)) == (10, 5, 3)
    assert data.train.text == full.train.text[:10]
    assert data.train.text_pair == full.train.text_pair[:10]
    assert data.validation.label == full.validation.label[:5]
    assert data.test.text_pair == full.test.text_pair[:3]
    # a limit larger than the split keeps everything
    assert len(load_data(str(synthetic_data_dir), limit_train=10_000).train) == 64


def test_majority_rate():
    split = TextSplit(text=("q",) * 5, text_pair=("p",) * 5, label=(1, 0, 0, 1, 0), label_names=("no", "yes"))
    assert split.majority_rate() == pytest.approx(3 / 5)
    assert TextSplit(("q",) * 4, ("p",) * 4, (1,) * 4, ("no", "yes")).majority_rate() == 1.0
    assert TextSplit((), (), (), ("no", "yes")).majority_rate() == 0.0
    three = TextSplit(("q",) * 6, None, (0, 1, 2, 2, 1, 2), ("a", "b", "c"))  # three classes: the largest, c
    assert three.majority_rate() == pytest.approx(3 / 6)


def test_majority_rate_of_loaded_split(synthetic_data_dir):
    data = load_data(str(synthetic_data_dir))
    labels = [r["label"] for r in _read_jsonl(synthetic_data_dir / "validation.jsonl")]
    yes = sum(labels)
    assert data.validation.majority_rate() == pytest.approx(max(yes, len(labels) - yes) / len(labels))


def test_answer_alias_column(tmp_path, synthetic_data_dir):
    folder = write_synthetic_boolq(tmp_path / "answer", ROWS, label_key="answer")
    assert "answer" in _read_jsonl(folder / "train.jsonl")[0] and "label" not in _read_jsonl(folder / "train.jsonl")[0]
    data = load_data(str(folder))
    reference = load_data(str(synthetic_data_dir))  # same seed, same rows, only the column name differs
    assert data.train.label == reference.train.label
    assert data.fingerprint() == reference.fingerprint()


def test_title_is_optional_and_int_labels_are_accepted(tmp_path):
    rows = [{"question": f"q{i}", "passage": f"p{i}", "label": i % 2} for i in range(4)]
    _write_jsonl(tmp_path / "d" / "train.jsonl", rows)
    _write_jsonl(tmp_path / "d" / "validation.jsonl", rows)
    data = load_data(str(tmp_path / "d"))
    assert data.train.title == ("", "", "", "")
    assert data.train.label == (0, 1, 0, 1) and data.label_names == ("no", "yes")  # BoolQ's columns: 0/1 is no/yes
    assert data.test is None


def test_parquet_loads_like_jsonl(tmp_path, synthetic_data_dir):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "parquet"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        pd.DataFrame(_read_jsonl(synthetic_data_dir / f"{split}.jsonl")).to_parquet(folder / f"{split}.parquet")
    from_parquet, from_jsonl = load_data(str(folder)), load_data(str(synthetic_data_dir))
    assert from_parquet.train == from_jsonl.train
    assert from_parquet.validation == from_jsonl.validation
    assert from_parquet.test == from_jsonl.test
    assert from_parquet.fingerprint() == from_jsonl.fingerprint()


def test_hub_style_parquet_layout(tmp_path, synthetic_data_dir):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "hub-copy"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: cc-by-sa-3.0\n---\n")
    for split in ("train", "validation"):
        rows = _read_jsonl(synthetic_data_dir / f"{split}.jsonl")
        pd.DataFrame(rows).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    data = load_data(str(folder))
    reference = load_data(str(synthetic_data_dir))
    assert data.train == reference.train and data.validation == reference.validation
    assert data.test is None


def test_local_folder_makes_no_network_request(synthetic_data_dir, monkeypatch):
    import socket

    import datasets.config

    # the library's own default (HF_UPDATE_DOWNLOAD_COUNTS=AUTO, not offline), as a user's process has it
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    lookups = []

    def record(*args, **kwargs):
        lookups.append(args[:2])
        raise OSError("no network in tests")

    monkeypatch.setattr(socket, "getaddrinfo", record)
    data = load_data(str(synthetic_data_dir))
    assert len(data.train) == 64
    assert lookups == [], f"loading a local folder looked up {lookups}"


def test_split_files_do_not_pick_up_similar_names(tmp_path, synthetic_data_dir):
    folder = tmp_path / "notes"
    shutil.copytree(synthetic_data_dir, folder)
    _write_jsonl(folder / "training_notes.jsonl", [{"note": "not a split"}])
    data = load_data(str(folder))
    assert len(data.train) == 64


def test_only_the_readme_layouts_are_read(tmp_path, synthetic_data_dir):
    # issue 16: train.jsonl + train_old.jsonl + backup/train.jsonl were merged into one 3x train split
    folder = tmp_path / "with-leftovers"
    shutil.copytree(synthetic_data_dir, folder)
    rows = _read_jsonl(folder / "train.jsonl")
    _write_jsonl(folder / "train_old.jsonl", rows[:28])
    _write_jsonl(folder / "train.jsonl.bak.jsonl", rows[:5])
    _write_jsonl(folder / "backup" / "train.jsonl", rows)
    _write_jsonl(folder / "backup" / "data" / "train-00000-of-00001.jsonl", rows)
    data = load_data(str(folder))
    assert len(data.train) == 64
    assert data.train == load_data(str(synthetic_data_dir)).train


def test_sharded_parquet_in_the_folder_and_in_data(tmp_path, synthetic_data_dir):
    pd = pytest.importorskip("pandas")
    for where in ("", "data"):
        folder = tmp_path / f"shards-{where or 'top'}"
        (folder / where).mkdir(parents=True, exist_ok=True)
        for split in ("train", "validation"):
            rows = _read_jsonl(synthetic_data_dir / f"{split}.jsonl")
            half = len(rows) // 2
            for i, part in enumerate((rows[:half], rows[half:])):
                pd.DataFrame(part).to_parquet(folder / where / f"{split}-{i:05d}-of-00002.parquet")
        pd.DataFrame(rows[:3]).to_parquet(folder / where / "train-old.parquet")  # not a shard name: ignored
        data = load_data(str(folder))
        assert data.train == load_data(str(synthetic_data_dir)).train


@pytest.mark.parametrize(
    "extra",
    ["train.parquet", "data/train-00000-of-00001.parquet", "train-00000-of-00001.parquet", "train.json"],
)
def test_two_layouts_for_one_split_are_refused(tmp_path, synthetic_data_dir, extra):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "ambiguous"
    shutil.copytree(synthetic_data_dir, folder)
    (folder / extra).parent.mkdir(parents=True, exist_ok=True)
    rows = _read_jsonl(folder / "train.jsonl")
    if extra.endswith(".parquet"):
        pd.DataFrame(rows).to_parquet(folder / extra)
    else:
        _write_jsonl(folder / extra, rows)
    message = _one_line_error(str(folder), str(folder), "'train'", "train.jsonl", extra)
    assert "ambiguous" in message


def test_missing_shard_is_refused(tmp_path, synthetic_data_dir):
    pd = pytest.importorskip("pandas")
    folder = tmp_path / "one-shard-missing"
    shutil.copytree(synthetic_data_dir, folder)
    (folder / "train.jsonl").unlink()
    rows = _read_jsonl(synthetic_data_dir / "train.jsonl")
    pd.DataFrame(rows).to_parquet(folder / "train-00000-of-00002.parquet")
    _one_line_error(str(folder), "train-00001-of-00002.parquet", "missing")


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


def test_missing_folder_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error("./no-such-boolq-folder", "no-such-boolq-folder", "not found")


def test_missing_folder_absolute(tmp_path):
    missing = tmp_path / "absent" / "boolq"
    _one_line_error(str(missing), str(missing), "not found")


def test_a_long_missing_folder_is_named_whole(tmp_path):
    missing = tmp_path / ("a-folder-name-longer-than-a-message-shows-of-other-values-" * 2) / "boolq"
    _one_line_error(str(missing), str(missing), "not found")


def test_folder_without_validation_split(tmp_path, synthetic_data_dir):
    folder = tmp_path / "train-only"
    folder.mkdir()
    shutil.copy(synthetic_data_dir / "train.jsonl", folder / "train.jsonl")
    _one_line_error(str(folder), str(folder), "'validation'")


def test_file_without_passage_column(tmp_path, synthetic_data_dir):
    folder = tmp_path / "no-passage"
    shutil.copytree(synthetic_data_dir, folder)
    rows = [{k: v for k, v in r.items() if k != "passage"} for r in _read_jsonl(folder / "validation.jsonl")]
    _write_jsonl(folder / "validation.jsonl", rows)
    _one_line_error(str(folder), str(folder), "'validation'", "'passage'")


def test_file_without_label_column(tmp_path, synthetic_data_dir):
    folder = tmp_path / "no-label"
    shutil.copytree(synthetic_data_dir, folder)
    rows = [{k: v for k, v in r.items() if k != "label"} for r in _read_jsonl(folder / "train.jsonl")]
    _write_jsonl(folder / "train.jsonl", rows)
    _one_line_error(str(folder), str(folder), "'train'", "'label'", "'answer'")


def test_label_neither_bool_nor_01(tmp_path, synthetic_data_dir):
    folder = tmp_path / "bad-label"
    shutil.copytree(synthetic_data_dir, folder)
    rows = [{"question": f"q{i}", "passage": f"p{i}", "label": 2 if i == 2 else i % 2} for i in range(4)]
    _write_jsonl(folder / "validation.jsonl", rows)
    _one_line_error(str(folder), str(folder), "'validation'", "row 3", "label", "got 2")


def test_one_class_in_train_is_refused(tmp_path, synthetic_data_dir):
    folder = tmp_path / "string-label"
    shutil.copytree(synthetic_data_dir, folder)
    rows = [{"question": f"q{i}", "passage": f"p{i}", "label": "yes"} for i in range(4)]
    _write_jsonl(folder / "train.jsonl", rows)
    _one_line_error(str(folder), str(folder / "train.jsonl"), "'train'", "'label'", "one class only ('yes')")


def test_empty_split(tmp_path, synthetic_data_dir):
    folder = tmp_path / "empty-validation"
    shutil.copytree(synthetic_data_dir, folder)
    (folder / "validation.jsonl").write_text("")
    _one_line_error(str(folder), "validation")


@pytest.mark.parametrize(
    "bad, needles",
    [
        (b'{"question": "caf\xe9", "passage": "p", "label": true}', ("train.jsonl:3: ", "not UTF-8")),
        (
            b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b', "passage": "p", "label": true}',
            ("train.jsonl:3: ", "nested too deeply"),
        ),
        (b'{"question": "q", "passage": "p" "label": true}', ("train.jsonl:3: ", "not JSON", "column 34")),
    ],
    ids=["not-utf8", "deeply-nested", "bad-json"],
)
def test_bad_jsonl_line_is_named_by_file_and_line(tmp_path, synthetic_data_dir, bad, needles):
    # issue 16: a UnicodeDecodeError traceback; a depth error without its line; the line of a bad JSON row only
    # in a second library line
    folder = tmp_path / "bad-line"
    shutil.copytree(synthetic_data_dir, folder)
    lines = (folder / "train.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "train.jsonl").write_bytes(b"".join(lines[:2]) + bad + b"\n" + b"".join(lines[3:]))
    message = _one_line_error(str(folder), str(folder / "train.jsonl"), *needles)
    assert len(message) < 300, message[:400]


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty", "blank-lines"])
def test_empty_train_file(tmp_path, synthetic_data_dir, content):
    # issue 16: "cannot read json file: StopIteration"
    folder = tmp_path / "empty-train"
    shutil.copytree(synthetic_data_dir, folder)
    (folder / "train.jsonl").write_text(content)
    message = _one_line_error(str(folder), str(folder / "train.jsonl"), "'train'", "no rows")
    assert "StopIteration" not in message and "corresponds to no data" not in message


@pytest.mark.parametrize("source", ["", "   "])
def test_empty_source_is_named_empty(source):
    # issue 16: "list index out of range" from the hub client for --data ""
    message = _one_line_error(source, "data: empty")
    assert "list index" not in message


def test_limit_that_leaves_no_rows_is_an_error(synthetic_data_dir):
    # limit 0 is refused by DataConfig; load_data itself reports the empty split
    with pytest.raises(DataError, match="'train' has no rows"):
        load_data(str(synthetic_data_dir), limit_train=0)


def test_hub_name_offline_is_a_data_error(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the libraries read these variables once, at import; an earlier test may already have imported them
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _one_line_error("nobody/no-such-dataset-xyz", "'nobody/no-such-dataset-xyz'", "hub")


# --------------------------------------------------------------------------------------------------------------
# The shared BoolQ dev split
# --------------------------------------------------------------------------------------------------------------


def test_shared_boolq_dev_split():
    if not (SHARED_DATA / "validation.jsonl").is_file():
        pytest.fail(
            f"shared BoolQ split missing: expected {SHARED_DATA}/{{train,validation,test}}.jsonl "
            "(see ../shared/data/boolq-dev-split/README.md); CI always has it"
        )
    data = load_data(str(SHARED_DATA))
    assert (len(data.train), len(data.validation), len(data.test)) == (2270, 500, 500)
    assert sum(data.train.label) == 1411
    assert sum(data.validation.label) == 311
    assert data.validation.majority_rate() == pytest.approx(311 / 500)
    assert data.test.majority_rate() == pytest.approx(311 / 500)
    assert all(data.validation.text_pair) and all(data.validation.text)


# --------------------------------------------------------------------------------------------------------------
# Encoding and batches
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from latencysolver.models.loading import load_tokenizer

    return load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def small_split() -> TextSplit:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    # every fourth question is long: cutting it (rather than the passage) would show
    questions = tuple(
        f"is {words[i % 10]} a letter" if i % 4 else "is " + " ".join(words[:5]) + " a letter" for i in range(12)
    )
    passages = tuple(" ".join(words[(i + j) % 10] for j in range(2 + 3 * i)) for i in range(12))  # 2 .. 35 words
    return TextSplit(
        text=questions, text_pair=passages, label=tuple(int(i % 3 == 0) for i in range(12)), label_names=("no", "yes")
    )


def test_encode_truncates_second_sequence_only(small_split, tokenizer):
    max_length = 16
    encoded = encode_split(small_split, tokenizer, max_length)
    assert isinstance(encoded, EncodedSplit) and len(encoded) == 12
    assert encoded.labels == tuple(int(v) for v in small_split.label)
    assert max(encoded.lengths()) == max_length
    assert min(encoded.lengths()) < max_length  # short rows are not padded
    sep = tokenizer.sep_token_id
    for q, p, ids, types in zip(
        small_split.text, small_split.text_pair, encoded.input_ids, encoded.token_type_ids, strict=True
    ):
        assert len(ids) <= max_length
        question_ids = tokenizer(q)["input_ids"]  # [CLS] q [SEP]
        assert list(ids[: len(question_ids)]) == question_ids  # the question is never cut
        assert ids[-1] == sep
        passage_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        kept = list(ids[len(question_ids) : -1])
        assert kept == passage_ids[: len(kept)]  # the passage is cut at its end
        if len(question_ids) + len(passage_ids) + 1 <= max_length:
            assert kept == passage_ids
        assert list(types) == [0] * len(question_ids) + [1] * (len(ids) - len(question_ids))


class _Raising:
    """Stands in for a tokenizer that must not be called: a cache hit never tokenizes."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, *args, **kwargs):
        raise AssertionError("tokenizer called although the encoded split is cached")


def test_encode_cache(small_split, tokenizer, tmp_path):
    first = encode_split(small_split, tokenizer, 16, cache_dir=tmp_path, tokenizer_id="minilm")
    files = list((tmp_path / "encoded").glob("*.pt"))
    assert len(files) == 1
    assert not list((tmp_path / "encoded").glob("*.tmp"))
    second = encode_split(small_split, _Raising(tokenizer.vocab_size), 16, cache_dir=tmp_path, tokenizer_id="minilm")
    assert second == first
    # another max_length, tokenizer or data is a miss, not a stale hit
    with pytest.raises(AssertionError, match="tokenizer called"):
        encode_split(small_split, _Raising(tokenizer.vocab_size), 32, cache_dir=tmp_path, tokenizer_id="minilm")
    with pytest.raises(AssertionError, match="tokenizer called"):
        encode_split(small_split, _Raising(tokenizer.vocab_size), 16, cache_dir=tmp_path, tokenizer_id="other")
    changed = dataclasses.replace(small_split, label=(1 - small_split.label[0],) + small_split.label[1:])
    with pytest.raises(AssertionError, match="tokenizer called"):
        encode_split(changed, _Raising(tokenizer.vocab_size), 16, cache_dir=tmp_path, tokenizer_id="minilm")


def test_corrupted_cache_entry_is_rebuilt(small_split, tokenizer, tmp_path):
    first = encode_split(small_split, tokenizer, 16, cache_dir=tmp_path, tokenizer_id="minilm")
    (entry,) = (tmp_path / "encoded").glob("*.pt")
    entry.write_bytes(b"not a torch file")
    again = encode_split(small_split, tokenizer, 16, cache_dir=tmp_path, tokenizer_id="minilm")
    assert again == first
    assert (
        encode_split(small_split, _Raising(tokenizer.vocab_size), 16, cache_dir=tmp_path, tokenizer_id="minilm")
        == first
    )


def _check_batch(encoded: EncodedSplit, batch, pad_id: int = 0) -> None:
    indices = batch.indices.tolist()
    lengths = [len(encoded.input_ids[i]) for i in indices]
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    assert ids.shape == (len(indices), max(lengths))  # padded to the batch's longest row only
    assert mask.sum(dim=1).tolist() == lengths
    for row, (i, n) in enumerate(zip(indices, lengths, strict=True)):
        assert ids[row, :n].tolist() == list(encoded.input_ids[i])
        assert (ids[row, n:] == pad_id).all()
        assert batch.inputs["token_type_ids"][row, :n].tolist() == list(encoded.token_type_ids[i])
    assert batch.labels.tolist() == [encoded.labels[i] for i in indices]


def test_eval_batches_cover_each_row_once(small_split, tokenizer):
    encoded = encode_split(small_split, tokenizer, 32)
    batches = list(eval_batches(encoded, batch_size=5))
    assert [len(b.indices) for b in batches] == [5, 5, 2]
    seen = [i for b in batches for i in b.indices.tolist()]
    assert sorted(seen) == list(range(12))
    for b in batches:
        _check_batch(encoded, b)


def _first(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_train_batches_are_seeded_and_padded_to_the_longest_row(small_split, tokenizer):
    encoded = encode_split(small_split, tokenizer, 32)
    a = _first(train_batches(encoded, batch_size=4, seed=7), 6)  # two epochs of 3 batches
    b = _first(train_batches(encoded, batch_size=4, seed=7), 6)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.indices, y.indices)
        assert torch.equal(x.inputs["input_ids"], y.inputs["input_ids"])
    assert sorted(i for x in a[:3] for i in x.indices.tolist()) == list(range(12))  # one epoch = every row once
    for x in a:
        _check_batch(encoded, x)
    orders = {tuple(tuple(x.indices.tolist()) for x in _first(train_batches(encoded, 4, seed), 3)) for seed in range(5)}
    assert len(orders) > 1  # the seed matters
    assert [x.indices.tolist() for x in a[:3]] != [x.indices.tolist() for x in a[3:]]  # epochs differ


def test_question_longer_than_max_length_is_not_a_bare_exception(tokenizer):
    from latencysolver.errors import LatencySolverError

    split = TextSplit(
        text=("is " + "alpha beta gamma delta " * 4 + "a letter",),
        text_pair=("short passage",),
        label=(1,),
        label_names=("no", "yes"),
    )
    try:
        encoded = encode_split(split, tokenizer, max_length=12)
    except LatencySolverError:
        return  # a one-line, actionable error is fine
    assert max(encoded.lengths()) <= 12
