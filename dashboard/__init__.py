"""The Streamlit clinician dashboard: app.py builds the navigation, pages/ holds one short script per page."""
