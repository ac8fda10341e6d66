"""``python -m dashboard [streamlit options]``: warm what every visitor shares, then serve the app.

What `make run` and `cataract-cam dashboard` start. Before the server listens it imports the app's
modules (PyTorch among them), loads the model the app starts on and creates the demo patients in a
fresh data folder, all into this process's caches; then it runs ``streamlit run dashboard/app.py``
with the options given, in this same process. So the first visitor's page does not wait for any of
it: the first script run finds the modules imported, the model loaded and the patients there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"


def warm() -> None:
    """Import the pages' modules, load the starting model, create the demo patients of a fresh data folder."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import dashboard.widgets.cases
    import dashboard.widgets.clinic
    import dashboard.widgets.patients  # noqa: F401  (the Review page's modules, imported for the first visitor)
    from components.base.errors import CataractCamError
    from dashboard import resources

    try:
        model = resources.default_model_path()
        if model.is_file():
            resources.load_checkpoint_file(model)
        resources.seed_demo_patients()
    except (CataractCamError, OSError):
        pass  # the page says what is wrong, in its own words, when the visitor comes


def main(argv: list[str]) -> None:
    # From the checkout, so that its .streamlit/ (127.0.0.1, allowed hosts, no telemetry, sign-in)
    # applies wherever the command is typed.
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from components.base import config
    from dashboard.cookies import harden_sign_in_cookie
    from dashboard.launch import StartRefused, launch_arguments, served_over_https

    try:
        # Sign-in and the host name from a platform's settings; no patient data served beyond this
        # computer without sign-in: refused here, before the server listens.
        argv = launch_arguments(argv, ROOT)
        hours = config.integer(config.SESSION_MAX_HOURS, 1, 168, unit="hours") or 12
    except (StartRefused, config.ConfigError) as refusal:
        print(f"cataract-cam dashboard: {refusal}", file=sys.stderr)
        raise SystemExit(2) from None
    # The sign-in cookie: Secure over HTTPS, and never outliving a session (Streamlit's own: 30 days).
    harden_sign_in_cookie(secure=served_over_https(argv, ROOT), max_age_seconds=hours * 3600)
    warm()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
