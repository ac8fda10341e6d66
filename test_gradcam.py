"""The prototype's test script, kept working: explain sample eyes, save the panels, print the results.

    python test_gradcam.py                      # the demo patients' eyes, the shipped demo model
    python test_gradcam.py --model best_model.pth --out gradcam_results

The samples are the demonstration patients' photographs (synthetic eyes, drawn on the fly by the
generator). For each one it saves ``gradcam_results/gradcam_<patient>_<eye>.jpg`` (Original |
Heatmap | Overlay) and prints the prediction, the confidence and the attention verdict, which
the prototype judged by eye ("correct lens focus") and this script measures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from components.lens.attention import check
from components.screening.vocabulary import DEMO_WARNING
from components.workflows.demo_patients import DEMO_PATIENTS
from gradcam_visualization import load_model, visualize_gradcam


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped demonstration model)")
    parser.add_argument("--out", default="gradcam_results", help="folder for the panels (default: gradcam_results)")
    args = parser.parse_args(argv)
    classifier = load_model(args.model)
    if getattr(classifier, "is_demo", False):
        print(f"Note: {DEMO_WARNING}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'image':<16} {'truth':<9} {'prediction':<11} {'confidence':>10}  attention")
    with tempfile.TemporaryDirectory(prefix="cataract-cam-samples-") as tmp:
        for patient in DEMO_PATIENTS:
            for eye, spec in (("OD", patient.od), ("OS", patient.os)):
                name = f"{patient.pseudo_id}_{eye}"
                photo = Path(tmp) / f"{name}.png"
                image = spec.render(eye, patient.patient_seed)
                Image.fromarray(image).save(photo)
                result = visualize_gradcam(photo, model_path=args.model, save_path=out / f"gradcam_{name}.jpg",
                                           show=False)
                attention = check(image, result["cam"], modality="external")
                print(f"{name:<16} {spec.label:<9} {result['prediction']:<11} {result['confidence']:>10.1%}  "
                      f"{attention.verdict}")
    print(f"Panels saved in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
