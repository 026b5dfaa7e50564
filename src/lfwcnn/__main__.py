"""``python -m lfwcnn STEP NAME=VALUE ...``: run one step of the pipeline by hand; or a command
(``python -m lfwcnn progress``) that reads what the steps wrote."""

from lfwcnn.cli import guarded
from lfwcnn.steps import main

raise SystemExit(guarded(main))
