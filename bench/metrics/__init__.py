"""Evaluation modules of the project, loadable with ``evaluate.load(path)`` offline."""

from pathlib import Path

GLUE_MRPC_PATH = str(Path(__file__).parent / "glue_mrpc" / "glue_mrpc.py")
