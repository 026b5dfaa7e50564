"""``python -m lfwcnn STEP NAME=VALUE ...``: run one step of the pipeline by hand."""

from lfwcnn.cli import guarded
from lfwcnn.steps import main

raise SystemExit(guarded(main))
