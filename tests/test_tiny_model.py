"""latencysolver.models.tiny: the tiny random BERT folder the tests and benchmarks/interop.py build on."""

from __future__ import annotations

import torch

from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.models.tiny import tiny_bert_folder


def test_tiny_bert_folder_is_a_seeded_model_folder(tmp_path):
    state = torch.random.get_rng_state()
    first = tiny_bert_folder(tmp_path / "a", layers=3, hidden=16, heads=2, intermediate=32)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is left alone
    second = tiny_bert_folder(tmp_path / "b", layers=3, hidden=16, heads=2, intermediate=32)
    a, b = load_classifier(str(first)), load_classifier(str(second))
    assert a.config.num_hidden_layers == 3 and a.config.hidden_size == 16
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    other = load_classifier(
        str(tiny_bert_folder(tmp_path / "c", layers=3, hidden=16, heads=2, intermediate=32, seed=1))
    )
    assert not torch.equal(a.classifier.weight, other.classifier.weight)
    assert load_tokenizer(str(first))("a question?")["input_ids"][0] == load_tokenizer(str(first)).cls_token_id
