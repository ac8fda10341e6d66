"""Base: what knows nothing of eyes (files written whole, CSV tables, freed memory, the errors and settings)."""
