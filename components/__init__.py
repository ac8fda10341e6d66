"""The engine of the cataract Grad-CAM dashboard: decoding, explanations, pictures, reports and records."""
