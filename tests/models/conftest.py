"""Make the tiny decoders of tests/fusion importable here (`from tiny_decoders import ...`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fusion"))
