"""Synthetic B-mode ultrasound: a deterministic, download-free corpus and labeled task.

Use :func:`generate_corpus` for unlabeled pretraining frames with a manifest and
:func:`generate_task` for a labeled task in the UltraBench layout.
"""

from usjepa.data.synthetic.phantom import LESION_CLASSES
from usjepa.data.synthetic.render import Patient, draw_patient, render_frame
from usjepa.data.synthetic.writer import contact_sheet, generate_corpus, generate_task

__all__ = [
    "LESION_CLASSES",
    "Patient",
    "contact_sheet",
    "draw_patient",
    "generate_corpus",
    "generate_task",
    "render_frame",
]
