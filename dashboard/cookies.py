"""The sign-in cookie as a clinic needs it: Secure when served over HTTPS, and no longer-lived than a session.

Streamlit sets its identity cookie for 30 days, without the Secure flag (its choice for Safari on
plain-HTTP localhost). ``python -m dashboard`` replaces the one function that sets it, so that the
cookie lives at most ``CATARACT_CAM_SESSION_MAX_HOURS`` and carries Secure whenever the sign-in's
redirect address is https://. The server-side session check (``dashboard.session.sign_in_ended``)
still decides whether a cookie lets anyone in: sign-out, idle time and age end it there.
"""

from __future__ import annotations

from typing import Any

__all__ = ["harden_sign_in_cookie"]


def harden_sign_in_cookie(*, secure: bool, max_age_seconds: int) -> bool:
    """Make Streamlit set its sign-in cookies with ``Secure`` (when ``secure``) and ``Max-Age=max_age_seconds``.

    Returns whether Streamlit's cookie setter was found and replaced (False on a Streamlit without it).
    """
    try:
        from streamlit.web.server.starlette import starlette_auth_routes as routes
    except ImportError:
        return False
    original = getattr(routes, "_set_single_cookie", None)
    needed = ("create_signed_value", "get_cookie_secret", "_get_cookie_path", "_AUTH_COOKIE_SAMESITE")
    if original is None or not all(hasattr(routes, name) for name in needed):
        return False

    def set_single_cookie(response: Any, cookie_name: str, serialized_value: str) -> None:
        signed = routes.create_signed_value(routes.get_cookie_secret(), cookie_name, serialized_value)
        response.set_cookie(cookie_name, signed.decode("utf-8"), httponly=True, secure=secure,
                            samesite=routes._AUTH_COOKIE_SAMESITE, path=routes._get_cookie_path(),
                            max_age=max_age_seconds)

    routes._set_single_cookie = set_single_cookie
    return True
