"""The README matches the files: each YAML block is a file in examples/ (and equal to it) or
says it is an illustration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from scalelab.grid.spec import expand, load_spec

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"^```yaml\n(.*?)^```", README, flags=re.S | re.M)
FILE = re.compile(r"# (examples/[\w.-]+\.ya?ml)\b")


def test_the_readme_has_yaml_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[b.splitlines()[0][:40] for b in BLOCKS])
def test_each_yaml_block_is_an_example_file_or_an_illustration(block):
    first = block.splitlines()[0]
    named = FILE.match(first)
    if named:
        path = REPO / named.group(1)
        assert path.is_file(), f"the README shows {named.group(1)}, which does not exist"
        assert yaml.safe_load(block) == yaml.safe_load(path.read_text()), (
            f"the README's block differs from {named.group(1)}"
        )
        assert expand(load_spec(path))  # and the file is a spec that loads
    else:
        assert first.startswith("# illustration"), (
            f"a README YAML block must start with '# examples/NAME.yaml' or "
            f"'# illustration: ...' (got {first!r})"
        )
        assert yaml.safe_load(block) is not None  # still valid YAML
