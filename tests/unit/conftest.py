"""Make this checkout importable as ``ansible_collections.bbklab.puller``."""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_tree = Path(tempfile.mkdtemp(prefix="puller-collections-"))
(_tree / "ansible_collections" / "bbklab").mkdir(parents=True)
(_tree / "ansible_collections" / "bbklab" / "puller").symlink_to(ROOT)
sys.path.insert(0, str(_tree))
