"""The catalog's entries, source choice, and the `scalelab data` commands."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from scalelab.cli import data as cli_data
from scalelab.data import catalog
from scalelab.data.catalog import DatasetEntry, register_dataset
from scalelab.data.sources import HubSource, LocalSource, PypiMember
from scalelab.errors import ScalelabError

REQUIRED = {
    "wikitext2", "trec", "sarcasm", "rotten_tomatoes", "sms_spam", "ag_news", "imdb",
    "gsm8k", "gsm_symbolic",
}  # fmt: skip


def test_required_entries_are_registered():
    names = {e.name for e in catalog.list_datasets()}
    assert REQUIRED <= names
    assert catalog.get_dataset("trec").label_names == ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
    assert catalog.get_dataset("imdb").hub_only and not catalog.get_dataset("wikitext2").hub_only


def test_every_package_member_has_a_real_sha256():
    for entry in catalog.list_datasets():
        for option in entry.sources:
            for src in option.values():
                if isinstance(src, PypiMember):
                    assert re.fullmatch(r"[0-9a-f]{64}", src.sha256), (entry.name, src.member)


def test_duplicate_and_bad_entries(registry, tmp_path):
    entry = DatasetEntry("x", "lm", "d", ({"data": LocalSource(str(tmp_path))},))
    register_dataset(entry)
    with pytest.raises(ValueError, match="duplicate dataset name 'x'"):
        register_dataset(entry)
    with pytest.raises(ValueError, match="kind must be one of"):
        DatasetEntry("y", "vision", "d", ({"data": LocalSource(".")},))


def test_fetch_unknown_and_hub_only_offline():
    with pytest.raises(ScalelabError, match="unknown dataset 'nope'"):
        catalog.fetch("nope")
    with pytest.raises(ScalelabError, match="imdb needs the Hugging Face Hub"):
        catalog.fetch("imdb")


def test_first_usable_option_wins(registry, tmp_path):
    f = tmp_path / "local.txt"
    f.write_text("x")
    register_dataset(
        DatasetEntry(
            "both",
            "lm",
            "d",
            ({"hub": HubSource("some/hub")}, {"data": LocalSource(str(f))}),
        )
    )
    assert catalog.fetch("both") == f  # Hub unreachable -> the local option


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    cli_data.register(app)
    return app


def test_cli_list_and_fetch(registry, tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("x")
    register_dataset(DatasetEntry("tiny", "lm", "a tiny corpus", ({"data": LocalSource(str(f))},)))
    runner = CliRunner()
    listed = runner.invoke(_app(), ["data", "list"])
    assert listed.exit_code == 0 and "tiny" in listed.output and "yes" in listed.output
    fetched = runner.invoke(_app(), ["data", "fetch", "tiny"])
    assert fetched.exit_code == 0 and fetched.output.strip() == str(f)
    unknown = runner.invoke(_app(), ["data", "fetch", "nope"])
    assert isinstance(unknown.exception, ScalelabError)
