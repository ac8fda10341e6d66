"""Widget keys for what a page draws more than once: built in one place from the eye, the exam and the photograph.

A page that shows a patient draws the same widgets once per eye (and a quick look draws them for
one unsaved photograph). Streamlit refuses two widgets with one key and stops the page, so every
widget drawn per eye takes its key from an :class:`EyeScope`, never from a bare string.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EyeScope", "widget_key"]


def widget_key(name: str, **scope: object) -> str:
    """``name`` qualified by every part of ``scope`` that is not None, as ``name|part=value|...``.

    Raises:
        ValueError: ``name`` is empty, holds ``|``, or no part of ``scope`` is given (the key would be shared).
    """
    if not name or "|" in name:
        raise ValueError(f"a widget key name must be non-empty text without '|', got {name!r}")
    parts = [f"{part}={value}" for part, value in scope.items() if value is not None]
    if not parts:
        raise ValueError(f"the widget key {name!r} needs a scope (eye, exam, photograph or patient)")
    return "|".join([name, *parts])


@dataclass(frozen=True)
class EyeScope:
    """Where one eye's widgets sit: a saved exam (with its eye), or an unsaved photograph by its SHA-256."""

    image_sha256: str
    exam_id: int | None = None
    eye: str | None = None

    def key(self, name: str) -> str:
        """The key of the widget ``name`` for this eye: unique per exam, or per photograph when unsaved."""
        if self.exam_id is not None:
            return widget_key(name, eye=self.eye, exam=self.exam_id)
        # An unsaved photograph's eye may still change on screen: its widgets keep their key meanwhile.
        return widget_key(name, photo=self.image_sha256[:16])
