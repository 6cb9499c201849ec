"""The ONNX Runtime backend on the tiny BERT of conftest.py, its compressed variants, a tiny CNN-like student, and
the tiny random model of every architecture family (tests/test_architectures.py), plain and compressed.

Tolerances, and why:
- fp32 ORT vs torch: atol 1e-4 on the logits.  Measured max |diff| is 2e-7 to 7e-7 on the trained tiny BERT (logits
  around ±3) and ~1e-8 on the random one; 1e-4 leaves room for other CPUs' summation orders and is still far
  below the error of a broken graph (an export with dropout left on was off by 1e-3 to 1e-2 on the random one).
- int8 ORT vs torch fp32: argmax agreement >= 95% on 40 synthetic rows.  A random-weight tiny BERT is useless
  for this check: it gives every row nearly the same logits (margin ~0.014 on all rows, one predicted class),
  so agreement is 100% whatever the quantizer does.  The module fixture therefore trains it for 60 steps on
  the learnable synthetic task first (~1 s), after which it predicts both classes; the test asserts that too.
  Measured: 100% agreement on every variant, max int8 logit error 3e-3 to 7e-3.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from latencysolver.compression import (
    drop_layers_,
    encoder_linears,
    factorize_,
    magnitude_prune_,
    make_pruning_permanent_,
    quantize,
    structured_prune_,
)
from latencysolver.config.study import LatencyConfig
from latencysolver.data.batches import EncodedSplit, collate, encode_pairs
from latencysolver.errors import ModelError
from latencysolver.latency.protocol import latency_inputs, measure_latency, measure_paired
from latencysolver.models import onnx_backend
from latencysolver.models.loading import load_classifier, load_tokenizer
from latencysolver.models.onnx_backend import (
    export_onnx,
    load_onnx,
    quantize_onnx_int8,
    to_backend,
)
from latencysolver.training.evaluate import predict_logits
from tests.conftest import write_synthetic_boolq
from tests.test_architectures import logits as torch_logits
from tests.test_architectures import tiny_model

FP32_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.95
# a sanity bound: int8 must not be merely "the same argmax".  Measured 4e-3 to 1.1e-2 with 7-bit weights on an
# AVX2-only CPU; full-range weights were up to 0.54 there (u8s8 saturation without VNNI), <= 7e-3 with VNNI.
INT8_MAX_LOGIT_ERROR = 0.05
ROWS = 40


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Torch on one thread in this module (measure_latency still sets its own count).  The matrices are tiny,
    and on a 2-core machine shared with other jobs two spinning OpenMP threads made the 60 training steps of
    ``trained`` take 50 s instead of 1 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows(tiny_model_dir, tmp_path_factory) -> EncodedSplit:
    folder = write_synthetic_boolq(tmp_path_factory.mktemp("onnx-boolq"), {"validation": ROWS}, seed=3)
    raw = [json.loads(line) for line in (folder / "validation.jsonl").read_text().splitlines()]
    tokenizer = load_tokenizer(str(tiny_model_dir))
    return encode_pairs(
        tokenizer, [r["question"] for r in raw], [r["passage"] for r in raw], 64, labels=[r["label"] for r in raw]
    )


@pytest.fixture(scope="module")
def example(rows) -> dict[str, torch.Tensor]:
    return collate(rows, [0]).inputs  # batch 1 at the row's real length, like the latency inputs


@pytest.fixture(scope="module")
def trained(tiny_model_dir, rows) -> nn.Module:
    """The tiny BERT after 60 AdamW steps on the synthetic rows, so its predictions are not all one class."""
    model = load_classifier(str(tiny_model_dir))
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = collate(rows, [(step * 8 + i) % len(rows) for i in range(8)])
        loss = model(**batch.inputs, labels=batch.labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _drop(model: nn.Module) -> None:
    drop_layers_(model, [0])


def _prune(model: nn.Module) -> None:
    magnitude_prune_(model, 0.5)
    make_pruning_permanent_(model)


def _low_rank(model: nn.Module) -> None:
    assert factorize_(model, 4)  # something was factorized (rank 4 saves FLOPs on 32x32 and 32x64 layers)


def _structured(model: nn.Module) -> None:
    structured_prune_(model, 0.5)  # 1 of 2 heads and 32 of 64 FFN neurons per block


def _everything(model: nn.Module) -> None:
    # In the order student.compress applies them: skip, prune (structured before low rank), factorize.
    _drop(model)
    _structured(model)
    magnitude_prune_(model, 0.3)
    _low_rank(model)
    make_pruning_permanent_(model)


VARIANTS = {
    "base": lambda m: None,
    "one-layer": _drop,
    "magnitude-pruned": _prune,
    "low-rank": _low_rank,
    "structured": _structured,
    "one-layer+pruned+low-rank": lambda m: (_drop(m), _prune(m), _low_rank(m)),
    "everything": _everything,
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, trained) -> nn.Module:
    model = copy.deepcopy(trained)
    VARIANTS[request.param](model)
    return model.eval()


def _random_inputs(batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids with a ragged attention mask (row 0 half padding) and both segment types."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, max(1, length // 2) :] = 0
    types = torch.zeros(batch, length, dtype=torch.long)
    types[:, length // 3 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def test_fp32_matches_torch_at_every_length(variant, example, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exporters' warnings must not escape export_onnx
        path = export_onnx(variant, tmp_path / "model.onnx", example)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["logits"]
    for i in graph.input:  # both axes symbolic, not the example's (1, n)
        assert [d.dim_param for d in i.type.tensor_type.shape.dim] == ["batch", "sequence"]

    clf = load_onnx(path)
    worst = 0.0
    for seed, (batch, length) in enumerate([(1, 2), (1, 11), (3, 17), (2, 64), (1, 128)]):
        inputs = _random_inputs(batch, length, seed)
        with torch.no_grad():
            expected = variant(**inputs).logits
        got = clf(**inputs).logits
        assert got.dtype == torch.float32 and got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=FP32_ATOL, rtol=0)
        worst = max(worst, (got - expected).abs().max().item())
    print(f"fp32 max |ORT - torch| = {worst:.2e}")


def test_int8_agrees_with_torch_fp32(variant, rows, example, tmp_path):
    reference = predict_logits(variant, rows, batch_size=8, progress=False)
    int8 = to_backend(variant, "onnxruntime", "int8", tmp_path, example, threads=1)
    fp32 = load_onnx(tmp_path / "model.fp32.onnx")  # the int8 graph's source, which to_backend keeps
    logits = predict_logits(int8, rows, batch_size=8, progress=False)

    predicted = reference.argmax(-1)
    assert set(predicted.tolist()) == {0, 1}, "the reference predicts one class: agreement would prove nothing"
    agreement = (logits.argmax(-1) == predicted).float().mean().item()
    error = (logits - reference).abs().max().item()
    print(
        f"int8 agreement {agreement:.3f}, max |int8 - fp32| = {error:.2e}, "
        f"sizes fp32 {fp32.size_bytes()} B / int8 {int8.size_bytes()} B"
    )
    assert agreement >= INT8_MIN_AGREEMENT
    assert error < INT8_MAX_LOGIT_ERROR
    # Embedding tables and weight matrices go to 1 byte per value (the tiny BERT: ~4.0 MB -> ~1.1 MB).
    assert int8.size_bytes() < 0.5 * fp32.size_bytes()
    assert fp32.path.name == "model.fp32.onnx" and int8.path.name == "model.int8.onnx"


def test_runs_under_the_latency_protocol(trained, rows, example, tmp_path):
    clf = to_backend(trained, "onnxruntime", "int8", tmp_path, example, threads=1)
    config = LatencyConfig(threads=2, rows=4, warmup=1, repeats=2)
    stats = measure_latency(clf, latency_inputs(rows, config), config)
    assert stats.rows == 4 and len(stats.samples_ms) == 8 and stats.p50_ms > 0
    assert clf.threads == 2  # measure_latency applied its thread count through set_threads
    paired = measure_paired(clf, trained, latency_inputs(rows, config), config)
    assert paired.speedup > 0


def test_set_threads_rebuilds_the_session_only_on_change(trained, example, tmp_path):
    clf = load_onnx(export_onnx(trained, tmp_path / "m.onnx", example), threads=1)
    session = clf._session
    clf.set_threads(1)
    assert clf._session is session
    clf.set_threads(2)
    assert clf.threads == 2 and clf._session is not session
    assert clf._session.get_session_options().intra_op_num_threads == 2
    assert clf._session.get_session_options().inter_op_num_threads == 1
    assert clf.eval() is clf
    with pytest.raises(ValueError, match="threads must be a positive integer, but got 0"):
        clf.set_threads(0)


def test_missing_input_is_named(trained, example, tmp_path):
    clf = load_onnx(export_onnx(trained, tmp_path / "m.onnx", example))
    with pytest.raises(ValueError, match=r"missing \['token_type_ids'\]"):
        clf(input_ids=example["input_ids"], attention_mask=example["attention_mask"])


@pytest.mark.parametrize(
    ("backend", "dtype", "named"),
    [
        ("tensorrt", "fp32", "'tensorrt'"),
        ("torch", "int8", "'torch'"),
        ("onnxruntime", "bf16", "'bf16'"),
        ("onnxruntime", "fp16", "'fp16'"),
        ("onnxruntime", "int4", "'int4'"),
    ],
)
def test_bad_backend_or_dtype_is_refused_by_name(trained, example, tmp_path, backend, dtype, named):
    with pytest.raises(ValueError, match=named):
        to_backend(trained, backend, dtype, tmp_path, example, threads=1)
    assert not list(tmp_path.iterdir())  # refused before anything was exported


def test_export_refuses_models_that_are_not_fp32(trained, example, tmp_path):
    with pytest.raises(ValueError, match="torch int8 Linear"):
        export_onnx(quantize(trained, "int8"), tmp_path / "q.onnx", example)
    with pytest.raises(ValueError, match="bfloat16"):
        export_onnx(quantize(trained, "bf16"), tmp_path / "h.onnx", example)


def test_export_leaves_the_model_as_it_was(trained, example, tmp_path):
    model = copy.deepcopy(trained).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx", example)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dynamo_fallback_when_torchscript_export_fails(trained, example, tmp_path, monkeypatch, capfd):
    """What runs once torch drops the TorchScript exporter: same numbers, quiet, and still quantizable."""

    def gone(*args, **kwargs):
        raise RuntimeError("TorchScript exporter removed")

    monkeypatch.setattr(onnx_backend, "_export_torchscript", gone)
    path = export_onnx(trained, tmp_path / "dynamo.onnx", example)
    assert capfd.readouterr().out == ""  # the dynamo exporter's progress lines are swallowed
    inputs = _random_inputs(3, 23, seed=7)  # another batch size and length than the batch-1 example
    with torch.no_grad():
        expected = trained(**inputs).logits
    torch.testing.assert_close(load_onnx(path)(**inputs).logits, expected, atol=FP32_ATOL, rtol=0)
    # Dynamo graphs carry value_info shapes ORT's quantizer rejects unless they are dropped first.
    int8 = load_onnx(quantize_onnx_int8(path, tmp_path / "dynamo.int8.onnx"))
    assert int8(**inputs).logits.argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_export_failure_names_both_exporters(example, tmp_path):
    class Unexportable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, input_ids, attention_mask, token_type_ids):
            raise RuntimeError("no forward for you")

    with pytest.raises(ModelError, match="TorchScript exporter failed.*dynamo exporter"):
        export_onnx(Unexportable(), tmp_path / "x.onnx", example)


# ---------------------------------------------------------------------------------------------------------
# A student that reads only input_ids and attention_mask (stand-in for the CNN student)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Output:
    logits: torch.Tensor


class TinyCNN(nn.Module):
    def __init__(self, vocab: int = 5000, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.head = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Output:
        x = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        x = torch.relu(self.conv(x.transpose(1, 2))) * attention_mask.unsqueeze(1)
        return _Output(logits=self.head(x.amax(dim=-1)))


def test_two_input_student_exports_with_only_those_inputs(tmp_path):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    example = {k: v for k, v in _random_inputs(1, 9, seed=0).items() if k != "token_type_ids"}
    clf = load_onnx(export_onnx(model, tmp_path / "cnn.onnx", example))
    assert clf.input_names == ("input_ids", "attention_mask")
    for seed, (batch, length) in enumerate([(1, 3), (4, 30)]):
        inputs = _random_inputs(batch, length, seed)  # includes token_type_ids: ignored, not fed
        with torch.no_grad():
            expected = model(**{k: inputs[k] for k in example}).logits
        torch.testing.assert_close(clf(**inputs).logits, expected, atol=FP32_ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# Every architecture family (tiny random models of tests/test_architectures.py)
# ---------------------------------------------------------------------------------------------------------

# fp32 on the tiny random models of tests/test_architectures.py (logits 0.01 to 1.5): measured max |ORT - torch|
# 5e-9 to 5e-7.  The tolerance is relative too, because the BERT-like families' random logits are ~0.01.
ONNX_ATOL, ONNX_RTOL = 1e-5, 1e-4


def _skip_structured_low_rank(model: nn.Module) -> None:
    # A student as ``compress`` makes it, with the first layer dropped (ModernBERT: the local one stays).
    drop_layers_(model, [1])
    structured_prune_(model, 0.5)
    assert factorize_(model, 4)


ONNX_VARIANTS = {"base": lambda model: None, "skip+structured+low-rank": _skip_structured_low_rank}


def onnx_inputs(batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 100, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, max(1, length // 2) :] = 0  # ragged: row 0 half padding
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def export_warning_free(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exporters' warnings must not escape export_onnx
        return export_onnx(model, path, onnx_inputs(1, 7, seed=0))


@pytest.fixture(scope="module")
def base_exports(tmp_path_factory) -> Callable[[str], Path]:
    """``base_exports(family)``: ``tiny_model(family)`` (seeded: the same weights every time) exported to fp32 once
    for the module; the fp32 and int8 tests of a family both start from it."""
    folder, made = tmp_path_factory.mktemp("onnx-families"), {}

    def export(family: str) -> Path:
        if family not in made:
            made[family] = export_warning_free(tiny_model(family), folder / f"{family}.fp32.onnx")
        return made[family]

    return export


@pytest.mark.parametrize("variant", list(ONNX_VARIANTS))
def test_onnx_fp32_matches_torch(family, variant, tmp_path, base_exports):
    model = tiny_model(family)
    ONNX_VARIANTS[variant](model)
    path = base_exports(family) if variant == "base" else export_warning_free(model, tmp_path / "model.onnx")
    clf = load_onnx(path)
    for seed, (batch, length) in enumerate([(1, 3), (2, 10), (3, 33)]):  # lengths the example did not have
        inputs = onnx_inputs(batch, length, seed)
        expected = torch_logits(model, inputs)
        torch.testing.assert_close(clf(**inputs).logits, expected, atol=ONNX_ATOL, rtol=ONNX_RTOL)


def test_onnx_int8_quantizes_the_encoder(family, tmp_path, base_exports):
    model = tiny_model(family)
    # what to_backend(model, "onnxruntime", "int8", ...) does (tested above), from the family's one fp32 export
    int8 = load_onnx(quantize_onnx_int8(base_exports(family), tmp_path / "model.int8.onnx"), threads=1)
    ops = [node.op_type for node in onnx.load(str(int8.path)).graph.node]
    # every encoder Linear becomes a MatMulInteger (ALBERT's shared block: once), the head's may too
    assert ops.count("MatMulInteger") >= len(encoder_linears(model))
    inputs = onnx_inputs(2, 10, seed=1)
    assert (int8(**inputs).logits - torch_logits(model, inputs)).abs().max() < 0.05


# `make test-slow` (CI) runs these: each dynamo export of a DeBERTa or ModernBERT graph takes 20-30 s on 2 cores.
# The fast suite keeps the fallback itself (test_dynamo_fallback_when_torchscript_export_fails, on the tiny BERT).
@pytest.mark.slow
@pytest.mark.parametrize(("family", "opset"), [("DeBERTa-v2", 17), ("ModernBERT", 18)])
def test_the_dynamo_fallback_exports_the_new_attention_kinds(family, opset, tmp_path, monkeypatch):
    """What runs once torch drops the TorchScript exporter.  ModernBERT's gated FFN splits in two, an opset-18
    Split that the down-conversion to 17 leaves invalid: its graph stays at opset 18."""

    def gone(*args, **kwargs):
        raise RuntimeError("TorchScript exporter removed")

    monkeypatch.setattr(onnx_backend, "_export_torchscript", gone)
    model = tiny_model(family)
    path = export_onnx(model, tmp_path / "dynamo.onnx", onnx_inputs(1, 7, seed=0))
    graph = onnx.load(str(path))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    inputs = onnx_inputs(3, 33, seed=2)
    torch.testing.assert_close(
        load_onnx(path)(**inputs).logits, torch_logits(model, inputs), atol=ONNX_ATOL, rtol=ONNX_RTOL
    )
    int8 = load_onnx(quantize_onnx_int8(path, tmp_path / "dynamo.int8.onnx"))
    assert (int8(**inputs).logits - torch_logits(model, inputs)).abs().max() < 0.05
