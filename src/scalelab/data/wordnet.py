"""WordNet 3.0 synonyms for EDA, read by nltk from the Debian package `wordnet-base`.

The package installs the database in /usr/share/wordnet (another folder: $WNSEARCHDIR,
WordNet's own variable). nltk's `WordNetCorpusReader` reads it after these fixes, done once
per database into `$SCALELAB_HOME/cache/wordnet/<digest>/wordnet`: the files are copied
(nltk refuses paths outside its data folders, so the cache folder is added to
`nltk.data.path`), the `lexnames` file the package lacks is written (WordNet's 45
lexicographer files, `lexnames(5WN)`), no Open Multilingual Wordnet reader is passed, and
nltk's mapping of other WordNet versions onto 3.0 (which needs an `index.sense` the package
lacks) is skipped: this is 3.0. The copy is built under a lock into a temp folder and
renamed into place (`io.build_once`), so processes that start together build it once; each
file is checked against the digest recorded at build time when read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

from scalelab.errors import ScalelabError

INSTALL = "apt-get install wordnet-base"
DEFAULT_DIR = "/usr/share/wordnet"
# The files nltk's reader opens (lexnames written here), and those it may open later.
FILES = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
)
EXTRA = ("adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "sents.vrb", "sentidx.vrb")
# lexnames(5WN): number, lexicographer file, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food "
    "noun.group noun.location noun.motive noun.object noun.person noun.phenomenon "
    "noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative "
    "verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def source_dir() -> Path:
    """Where the WordNet database is: $WNSEARCHDIR, else /usr/share/wordnet."""
    return Path(os.environ.get("WNSEARCHDIR") or DEFAULT_DIR)


def wordnet_problem() -> str | None:
    """Why WordNet cannot be read here (one line naming the fix), None if it can. Cheap:
    checks that nltk imports and the database files exist, reads nothing."""
    import importlib.util

    if importlib.util.find_spec("nltk") is None or importlib.util.find_spec("sklearn") is None:
        return "nltk and scikit-learn are not installed: pip install 'scalelab[augment]'"
    folder = source_dir()
    if missing := [f for f in FILES if not (folder / f).is_file()]:
        return f"WordNet is not installed ({folder} lacks {missing[0]}): {INSTALL}"
    return None


def lexnames_text() -> str:
    """The `lexnames` file: `NN<TAB>name<TAB>category` per line."""
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def _build(source: Path, target: Path, names: list[str]) -> None:
    """Copy the database into a temp folder with `lexnames` and a digest manifest, rename."""
    from scalelab.data.sources import sha256_file
    from scalelab.io import make_temp_dir, replace_dir

    tmp = make_temp_dir(target)
    try:
        for name in names:
            shutil.copyfile(source / name, tmp / name)  # a copy, not a link: nltk wants files
        (tmp / "lexnames").write_text(lexnames_text())
        manifest = {name: sha256_file(tmp / name) for name in [*names, "lexnames"]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _verified(folder: Path) -> bool:
    """Every file of the copy matches the digest recorded when it was built."""
    from scalelab.data.sources import sha256_file_cached

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        return all(sha256_file_cached(folder / n) == d for n, d in manifest.items())
    except (OSError, ValueError):
        return False


def wordnet_folder() -> Path:
    """The nltk-readable copy of the database (built on first use; rebuilt if damaged).
    Raises ScalelabError naming `apt-get install wordnet-base` when there is none."""
    from scalelab import paths
    from scalelab.data.sources import sha256_file_cached
    from scalelab.io import build_once

    if problem := wordnet_problem():
        raise ScalelabError(problem)
    source = source_dir()
    names = [*FILES, *(f for f in EXTRA if (source / f).is_file())]
    key = hashlib.sha256(
        "".join(f"{n}\t{sha256_file_cached(source / n)}\n" for n in names).encode()
    ).hexdigest()[:16]
    target = paths.cache_dir("cache", "wordnet", key) / "wordnet"
    build_once(target, lambda: _build(source, target, names))
    if not _verified(target):  # damaged since: set aside and build again
        shutil.rmtree(target, ignore_errors=True)
        build_once(target, lambda: _build(source, target, names))
        if not _verified(target):
            raise ScalelabError(f"WordNet copy {target} does not match its digests")
    return target


@lru_cache(maxsize=1)
def wordnet_reader():
    """nltk's WordNetCorpusReader over the cached copy (about 2 s to open)."""
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet"):
            return None  # this is WordNet 3.0, the version nltk maps others onto

    folder = wordnet_folder()
    if str(folder.parent) not in nltk.data.path:
        nltk.data.path.append(str(folder.parent))
    with warnings.catch_warnings():  # "multilingual functions are not available": no omw
        warnings.simplefilter("ignore", UserWarning)
        return Reader(str(folder), None)


@lru_cache(maxsize=1)
def wordnet_synonyms():
    """word -> its WordNet synonyms: the lemma names of every synset of the word (any part
    of speech; nltk finds base forms, "cats" -> cat), `_` read as a space, sorted, without
    the word itself. Raises ScalelabError when WordNet is missing."""
    reader = wordnet_reader()

    @lru_cache(maxsize=65536)
    def synonyms(word: str) -> tuple[str, ...]:
        names = {
            lemma.name().replace("_", " ") for s in reader.synsets(word) for lemma in s.lemmas()
        }
        return tuple(sorted(n for n in names if n.lower() != word.lower()))

    return synonyms
