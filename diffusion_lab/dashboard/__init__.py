"""Lesson 10's app: one ipywidgets dashboard over every bundled model and task.

    from diffusion_lab.dashboard import build_dashboard
    build_dashboard()          # JupyterLab; `make dashboard` serves notebooks/10_dashboard.ipynb

:mod:`.runs` computes (no widgets), :mod:`.render` makes PNGs, :mod:`.app` holds the
widgets, :mod:`.launch` starts and stops a Voilà server (tests, screenshots).
"""

from __future__ import annotations

from .app import Dashboard, build_dashboard
from .runs import MASKS, TASKS, Request, Result, check, run

__all__ = ["Dashboard", "build_dashboard", "Request", "Result", "check", "run", "TASKS",
           "MASKS"]
