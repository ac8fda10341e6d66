"""Streamlit pieces the pages share: each draws widgets and returns what the user chose, computing nothing itself."""
