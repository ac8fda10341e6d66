"""Rendering one synthetic eye photograph from a seed: what is drawn, from which random stream, and its record."""

from __future__ import annotations

import numpy as np

from components.screening.vocabulary import EYES
from models.synthetic.compose import _compose, _photometric
from models.synthetic.opacity import _opacity
from models.synthetic.parameters import (
    CATARACT_TYPES,
    GENERATOR_VERSION,
    LABELS,
    SyntheticEye,
    _draw_patient,
    _draw_scene,
)

_PATIENT_STREAM = 0x9A7E47  # keeps a patient's random stream apart from any image's of the same seed

# Grade weights for the non-mature types, chosen so that with mature always grade 3 or 4 the
# grades of a type-balanced cataract set come out uniform over 1..4.
_GRADE_WEIGHTS = np.array([2, 2, 1, 1], dtype=np.float64) / 6.0


def _resolve_condition(rng: np.random.Generator, label: str | None, cataract_type: str | None,
                       grade: int | None) -> tuple[str, str | None, int]:
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if cataract_type is not None and cataract_type not in CATARACT_TYPES:
        raise ValueError(f"cataract_type must be one of {', '.join(CATARACT_TYPES)}, got {cataract_type!r}")
    if grade is not None and (isinstance(grade, bool) or not isinstance(grade, (int, np.integer))
                              or not 0 <= grade <= 4):
        raise ValueError(f"grade must be an integer from 0 to 4, got {grade!r}")
    if label is None:
        if cataract_type is not None or (grade is not None and grade > 0):
            label = "cataract"
        elif grade == 0:
            label = "normal"
        else:
            label = LABELS[int(rng.integers(0, 2))]
    if label == "normal":
        if cataract_type is not None or (grade is not None and grade != 0):
            raise ValueError("a normal eye has no cataract type and grade 0; got a type or a non-zero grade")
        return label, None, 0
    if grade == 0:
        raise ValueError("a cataract eye needs a grade from 1 to 4, got 0")
    if cataract_type is None:
        if grade is not None and grade < 3:
            cataract_type = CATARACT_TYPES[int(rng.integers(0, 3))]
        else:
            cataract_type = CATARACT_TYPES[int(rng.integers(0, 4))]
    if grade is None:
        grade = int(rng.integers(3, 5)) if cataract_type == "mature" else int(rng.choice(4, p=_GRADE_WEIGHTS)) + 1
    if cataract_type == "mature" and grade < 3:
        raise ValueError(f"a mature cataract is grade 3 or 4, got grade {grade}")
    return label, cataract_type, int(grade)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in size)
            or min(size) < 64 or max(size) > 4096):
        raise ValueError(f"size must be (width, height) in pixels, each 64 to 4096, got {size!r}")
    return int(size[0]), int(size[1])


def render_eye(seed: int, *, label: str | None = None, cataract_type: str | None = None, grade: int | None = None,
               eye: str | None = None, size: tuple[int, int] = (512, 384),
               patient_seed: int | None = None) -> SyntheticEye:
    """Render one synthetic eye photograph of ``size`` (width, height) from ``seed``.

    Anything not given (label, type, grade, eye) is drawn from the seed. The scene (face, eye,
    camera) comes from one random stream and the lens opacity from another, so the same seed
    rendered as cataract and as normal differs only inside the pupil. ``patient_seed`` fixes
    what two eyes of one person share (skin, iris colour, age, lashes); it defaults to ``seed``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if eye is not None and eye not in EYES:
        raise ValueError(f"eye must be 'OD' or 'OS', got {eye!r}")
    width, height = _check_size(size)
    if patient_seed is None:
        patient_seed = seed
    elif isinstance(patient_seed, bool) or not isinstance(patient_seed, (int, np.integer)) or patient_seed < 0:
        raise ValueError(f"patient_seed must be a non-negative integer, got {patient_seed!r}")
    scene_ss, opacity_ss, choice_ss = np.random.SeedSequence(int(seed)).spawn(3)
    choice_rng = np.random.default_rng(choice_ss)
    label, kind, grade = _resolve_condition(choice_rng, label, cataract_type, grade)
    if eye is None:
        eye = EYES[int(choice_rng.integers(0, 2))]
    patient = _draw_patient(np.random.default_rng(np.random.SeedSequence([int(patient_seed), _PATIENT_STREAM])))
    scene_rng = np.random.default_rng(scene_ss)
    # OD photographed face on has its nasal canthus on the image's right.
    scene = _draw_scene(scene_rng, width, height, 1.0 if eye == "OD" else -1.0)
    opacity = None
    if kind is not None:
        op_rng = np.random.default_rng(opacity_ss)
        rp, light = scene.rp, scene.light

        def opacity(du: np.ndarray, dv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return _opacity(op_rng, kind, grade, du, dv, rp, light)

    img, masks, geometry = _compose(scene, patient, scene_rng, opacity)
    image, quality = _photometric(scene_rng, img)
    meta = {
        "label": label,
        "type": kind,
        "grade": grade,
        "eye": eye,
        "seed": int(seed),
        "patient_seed": int(patient_seed),
        **geometry,
        "iris_colour": patient.iris_colour,
        "skin_tone": round(patient.tone, 4),
        "jpeg_quality": quality,
        "size": (width, height),
        "generator_version": GENERATOR_VERSION,
    }
    return SyntheticEye(image=image, masks=masks, meta=meta)
