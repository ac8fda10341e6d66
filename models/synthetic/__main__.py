"""Regenerates docs/synthetic_preview.png: python -m models.synthetic"""

from pathlib import Path

from models.synthetic.dataset import preview_grid

preview_grid(list(range(2026, 2050)), Path(__file__).resolve().parents[2] / "docs" / "synthetic_preview.png")
