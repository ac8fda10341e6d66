"""Workflows: the engine composed without a UI: batch, audit, comparison, the review case, exports."""
