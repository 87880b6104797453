"""Where scalelab keeps downloads, caches and trained tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "SCALELAB_HOME"


def home() -> Path:
    """The scalelab home folder: `$SCALELAB_HOME`, else `~/.cache/scalelab`. Created on use."""
    root = Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "scalelab").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the home folder, e.g. `cache_dir("datasets", "wikitext2")`."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
