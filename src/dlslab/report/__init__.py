"""Run folders (run.py), plots (plots.py) and the HTML report (html.py)."""
