"""Explanation: the CAM engine, its pictures (colormaps, blends, the region outline) and faithfulness checks."""
