"""The teacher cache: fine-tuned once, reproducible, reused, and refused clearly when corrupted."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from latencysolver.config.study import load_study_config
from latencysolver.data.batches import encode_split
from latencysolver.data.text import load_data
from latencysolver.errors import ModelError
from latencysolver.models.teacher import MARKER, prepare_teacher
from tests.conftest import write_study_yaml


@pytest.fixture(scope="module")
def headless_model_dir(tmp_path_factory, tiny_model_dir):
    """A tiny encoder saved WITHOUT a classification head, like a real pretrained checkpoint."""
    folder = tmp_path_factory.mktemp("headless")
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture()
def setup(tmp_path, headless_model_dir, synthetic_data_dir):
    config = load_study_config(write_study_yaml(tmp_path, headless_model_dir, synthetic_data_dir))
    data = load_data(str(synthetic_data_dir))
    tokenizer = AutoTokenizer.from_pretrained(headless_model_dir)
    train = encode_split(data.train, tokenizer, config.data.max_length)
    return config, train, data.train.fingerprint()


def quiet(_):
    pass


def test_same_config_gives_the_same_teacher(setup, tmp_path):
    config, train, fingerprint = setup
    torch.manual_seed(123)  # whatever the global RNG state, the teacher's seed decides
    a = prepare_teacher(config, train, fingerprint, tmp_path / "a", progress=False, log=quiet)
    torch.manual_seed(456)
    b = prepare_teacher(config, train, fingerprint, tmp_path / "b", progress=False, log=quiet)
    assert a.key == b.key
    assert torch.equal(a.train_logits, b.train_logits)


def test_second_call_reuses_the_cached_teacher(setup, tmp_path):
    config, train, fingerprint = setup
    first = prepare_teacher(config, train, fingerprint, tmp_path, progress=False, log=quiet)
    assert (first.path / MARKER).is_file()
    lines = []
    second = prepare_teacher(config, train, fingerprint, tmp_path, progress=False, log=lines.append)
    assert second.path == first.path
    assert any("cached fine-tune" in line for line in lines) and not any("fine-tuning" in line for line in lines)
    assert torch.equal(first.train_logits, second.train_logits)


def test_corrupted_teacher_cache_is_a_clear_error(setup, tmp_path):
    config, train, fingerprint = setup
    teacher = prepare_teacher(config, train, fingerprint, tmp_path, progress=False, log=quiet)
    (teacher.path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="delete the folder to rebuild it") as info:
        prepare_teacher(config, train, fingerprint, tmp_path, progress=False, log=quiet)
    assert str(teacher.path) in str(info.value) and "\n" not in str(info.value)
