"""Shared test setup: puts ``plugins/python`` and the helper package (``sdk/python/src``, as
the build does) on ``sys.path`` and loads the sample events."""

import sys
from pathlib import Path

# No __pycache__ under plugins/: the test crate's build script watches that tree.
sys.dont_write_bytecode = True

PYTHON_DIR = Path(__file__).resolve().parents[1]
HELPER_DIR = PYTHON_DIR.parents[1] / "sdk" / "python" / "src"
for path in (HELPER_DIR, PYTHON_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from projector_plugin import Event  # noqa: E402
from projector_plugin.testing import event_from_sample, events_from_samples  # noqa: E402

SAMPLES_PATH = PYTHON_DIR.parent / "testdata" / "samples.jsonl"
DATA_DIR = Path(__file__).resolve().parent / "data"


def samples() -> list[Event]:
    """The 11 events of ``plugins/testdata/samples.jsonl``."""
    return events_from_samples(SAMPLES_PATH.read_text(encoding="utf-8"))


def data_events(name: str) -> list[Event]:
    """The events of ``tests/data/<name>.jsonl``."""
    return events_from_samples((DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8"))


def sample(line: str) -> Event:
    """One event from a sample line."""
    return event_from_sample(line)
