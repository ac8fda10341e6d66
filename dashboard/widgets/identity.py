"""Sign-in on the dashboard: the sign-in page, the refusal to serve, and who is signed in (in the sidebar)."""

from __future__ import annotations

import os
import signal
import threading

import streamlit as st
from streamlit.runtime import Runtime

from components.screening.vocabulary import NO_SIGN_IN_NOTICE, ROLE_LABELS, ROLES
from dashboard import session
from dashboard.access import Person

STOP_DELAY_S = 3.0


def refuse_ui(reason: str) -> None:
    """Say why the dashboard will not serve, then stop the server: nothing else is drawn."""
    st.title("Cataract CAM")
    st.error(reason, icon=":material/block:")
    if _in_a_server():
        # A server that must not serve should not keep listening; the delay lets this page reach the browser.
        # SIGTERM is how Streamlit's own shutdown is asked for: the server closes, the process ends.
        threading.Timer(STOP_DELAY_S, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    st.stop()


def _in_a_server() -> bool:
    """Whether this script runs in a Streamlit server's process (not in a script runner such as AppTest's).

    Only a server's own runtime may be stopped by signalling the process: a script runner's
    stand-in runtime shares its process with whatever runs it.
    """
    return Runtime.exists() and type(Runtime.instance()) is Runtime


def sign_in_ui(ended: str | None = None) -> None:
    """The page a visitor sees before signing in: no patient data, one button to the identity provider.

    ``ended``: why an earlier sign-in of this browser no longer lets it in (signed out, idle, too old).
    """
    st.title("Cataract CAM")
    if ended:
        st.info(ended, icon=":material/timer_off:")
    st.markdown("Sign in with your clinic account to review patients.")
    st.button("Sign in", key="sign_in", type="primary", icon=":material/login:", on_click=st.login)
    st.stop()


def no_role_ui(person: Person) -> None:
    """The page of a signed-in person without any role here: who they are, sign out, nothing else."""
    st.title("Cataract CAM")
    st.text(f"Signed in as {person.name}.")
    st.error("Your account has no role in this dashboard (clinician, viewer or administrator). "
             "Ask an administrator to grant you one.", icon=":material/no_accounts:")
    st.button("Sign out", key="sign_out_no_role", icon=":material/logout:", on_click=session.sign_out)
    st.stop()


def identity_sidebar_ui(person: Person) -> None:
    """Who acts in this session: the signed-in identity and its roles with a sign-out button, or the typed name."""
    if person.authenticated:
        st.markdown("**Signed in**")
        st.text(person.name)  # a display name is shown as written, never as Markdown
        st.caption(", ".join(ROLE_LABELS[r] for r in ROLES if r in person.roles))
        st.button("Sign out", icon=":material/logout:", on_click=session.sign_out, key="sign_out")
        return
    st.warning(NO_SIGN_IN_NOTICE, icon=":material/lock_open:")
    st.text_input("Your name", key="reviewer", max_chars=100, placeholder="Reviewing clinician",
                  help="Names you on your reviews and in the audit trail; marked unauthenticated.")
