"""The user's side of ``benchmarks/interop.py``: run by the throwaway virtualenv's Python, with Optimum and the
transformers it resolved; it never imports latencysolver.

    python interop_optimum.py FOLDER ROWS.json OUT.json

Loads the export in FOLDER the way the README shows (``ORTModelForSequenceClassification`` on ``model.onnx``,
``AutoTokenizer``, a ``text-classification`` pipeline), classifies the rows of ROWS.json (``{"text": [...],
"text_pair": [...] or null, "max_length": n}``) one at a time, and writes to OUT.json each row's label and
probability, the token ids the folder's tokenizer gives it, and the versions it ran with.  Whatever the libraries
print (warnings, a prompt) goes to stderr, which the driver reads.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version


def main(folder: str, rows_path: str, out_path: str) -> None:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoConfig, AutoTokenizer, pipeline

    with open(rows_path) as fh:
        rows = json.load(fh)
    texts, pairs, max_length = rows["text"], rows["text_pair"], rows["max_length"]
    # the config's model type is the export's own (its code ships in the folder); passing the config in spares
    # Optimum's own AutoConfig call, which names the folder with a trailing "/" and warns about the empty name
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = ORTModelForSequenceClassification.from_pretrained(folder, config=config)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    # the export cuts the passage (the second text) at its max_length, as the model was trained and measured
    cut = {"truncation": "only_second" if pairs is not None else True, "max_length": max_length}
    rows_in = list(zip(texts, pairs or [None] * len(texts), strict=True))
    inputs = [{"text": t, "text_pair": p} for t, p in rows_in] if pairs is not None else list(texts)
    answers = classify(inputs, **cut)
    ids = [tokenizer(t, p, **cut)["input_ids"] for t, p in rows_in]
    result = {
        "labels": [a["label"] for a in answers],
        "probabilities": [float(a["score"]) for a in answers],
        "input_ids": ids,
        "versions": {name: version(name) for name in ("optimum", "optimum-onnx", "transformers", "onnxruntime")},
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
