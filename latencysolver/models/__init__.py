"""Models: loading encoders by hub id or local folder (``loading.py``); the teacher, fine-tuned once and cached
with its train logits (``teacher.py``); students: a compressed copy of the teacher or a CNN (``student.py``,
``cnn.py``), saved and loaded; and the onnxruntime backend a student can run on (``onnx_backend.py``).
``student.compress`` applies a ``Recipe`` with the passes of ``compression/``; ``to_runnable`` makes the model
that is measured and shipped (torch quantized, or an onnxruntime session)."""

from latencysolver.models.loading import count_parameters, load_classifier, load_tokenizer, nonzero_parameters
from latencysolver.models.student import (
    LoadedStudent,
    StudentInTraining,
    cnn_student,
    compress,
    load_student,
    save_student,
    to_runnable,
)
from latencysolver.models.teacher import Teacher, prepare_teacher

__all__ = [
    "LoadedStudent",
    "StudentInTraining",
    "Teacher",
    "cnn_student",
    "compress",
    "count_parameters",
    "load_classifier",
    "load_student",
    "load_tokenizer",
    "nonzero_parameters",
    "prepare_teacher",
    "save_student",
    "to_runnable",
]
