"""Student kinds: how a trial gets its student.  ``base.StudentKind`` is the protocol; ``registry.KINDS`` holds
the built-in kinds (``compressed``: per-trial compression and distillation; ``elastic``: a slice of the study's
elastic student; ``cnn``: a small CNN; ``teacher``: the teacher as is, for the usual recipes); a trial picks its
kind once (``registry.kind_of``)."""

from latencysolver.search.kinds.base import StudentKind
from latencysolver.search.kinds.registry import (
    KINDS,
    keep_the_better,
    kind_of,
    register,
    train_student,
    untrained_student,
)

__all__ = ["KINDS", "StudentKind", "keep_the_better", "kind_of", "register", "train_student", "untrained_student"]
