"""EDA (Wei & Zou 2019) on an injected synonym table, the `task.augment` option of
classification tasks (training examples only, seeded, ratio 0 = the original set), its
spec errors, and the real WordNet (skipped, with the install line, where it is missing)."""

from __future__ import annotations

import gzip
import random
import re
from pathlib import Path

import pytest
from helpers import assert_spec_error, write_dataset, write_spec

from scalelab.config import validate
from scalelab.data.augment import (
    EdaAugment,
    augment_training,
    chosen,
    eda_copies,
    join_words,
    random_deletion,
    random_insertion,
    random_swap,
    split_words,
    synonym_replacement,
)
from scalelab.data.classification import ClassificationTask, load_task_data
from scalelab.data.wordnet import INSTALL, LEXNAMES, lexnames_text, wordnet_problem
from scalelab.engine.args import identity
from scalelab.grid.spec import expand, load_spec

TABLE = {"quick": ["fast"], "Quick": ["fast"], "dog": ["hound", "pooch"], "jumps": ["leaps"],
         "the": ["a"], "3": ["three"], "fox": []}  # fmt: skip
STOP = frozenset({"the", "a", "over", "what"})
TEXT = "The quick brown fox, aged 3, jumps over Dr. Smith's lazy dog 2 times?"


def syn(word: str) -> list[str]:
    return TABLE.get(word, [])


def words(chunks) -> list[str]:
    return [c[1] for c in chunks if c[1]]


def affixes(chunks) -> list[tuple[str, str]]:
    return [(c[0], c[2]) for c in chunks]


def test_words_keep_their_punctuation_case_and_digits():
    chunks = split_words(TEXT)
    assert join_words(chunks) == TEXT
    assert chunks[3] == ["", "fox", ","] and chunks[5] == ["", "3", ","]
    assert chunks[9] == ["", "Smith's", ""] and chunks[-1] == ["", "times", "?"]
    assert split_words("What is it ?")[-1] == ["?", "", ""]  # punctuation alone: no word


def test_synonym_replacement_replaces_every_occurrence_keeping_case_and_numbers():
    text = "The quick dog saw 3 quick cats , Quick !"
    out = join_words(synonym_replacement(split_words(text), 10, random.Random(0), syn, STOP))
    # every word with a synonym is replaced; stop words ("The") and numbers ("3") never are
    assert out in ("The fast hound saw 3 fast cats , Fast !",
                   "The fast pooch saw 3 fast cats , Fast !")  # fmt: skip
    outs = {join_words(synonym_replacement(split_words(text), 1, random.Random(s), syn, STOP))
            for s in range(40)}  # fmt: skip
    # n = 1: exactly one distinct word is replaced, each candidate in some draw
    assert outs == {"The fast dog saw 3 fast cats , Quick !", "The quick hound saw 3 quick cats , Quick !",
                    "The quick pooch saw 3 quick cats , Quick !", "The quick dog saw 3 quick cats , Fast !"}  # fmt: skip


def test_random_insertion_adds_synonyms_of_non_stop_words_only():
    chunks = split_words(TEXT)
    for seed in range(20):
        out = random_insertion(chunks, 3, random.Random(seed), syn, STOP)
        added = list(words(out))
        for w in words(chunks):
            added.remove(w)
        # three words from the synonyms of quick / dog / jumps: never of "The" or "3"
        assert len(added) == 3 and set(added) <= {"fast", "hound", "pooch", "leaps"}
        assert "three" not in added and "a" not in added
    # nothing has a synonym: the sentence comes back as it was
    assert (
        join_words(random_insertion(split_words("the 3 fox"), 2, random.Random(0), syn, STOP))
        == "the 3 fox"
    )


def test_random_swap_moves_words_and_leaves_punctuation_in_place():
    chunks = split_words(TEXT)
    changed = 0
    for seed in range(20):
        out = random_swap(chunks, 2, random.Random(seed))
        assert sorted(words(out)) == sorted(words(chunks)) and affixes(out) == affixes(chunks)
        changed += words(out) != words(chunks)
    assert changed >= 18  # two swaps undo each other now and then (1 in 78 here)
    assert join_words(random_swap(split_words("one , two"), 1, random.Random(0))) == "two , one"
    assert join_words(random_swap(split_words("alone ?"), 3, random.Random(0))) == "alone ?"


def test_random_deletion_keeps_punctuation_and_at_least_one_word():
    chunks = split_words("Where is 10 Downing Street ?")
    assert random_deletion(chunks, 0.0, random.Random(0)) == chunks
    for seed in range(10):
        out = random_deletion(chunks, 1.0, random.Random(seed))
        assert len(words(out)) == 1 and join_words(out).endswith(" ?")
    kept = [len(words(random_deletion(chunks, 0.5, random.Random(s)))) for s in range(200)]
    assert 1 <= min(kept) and max(kept) == 5 and 2.0 < sum(kept) / len(kept) < 3.2  # ~ 5 * 0.5
    assert join_words(random_deletion(split_words("Hello!"), 1.0, random.Random(0))) == "Hello!"


def eda(**over) -> EdaAugment:
    return EdaAugment.model_validate({"method": "eda", "alpha_sr": 0, "alpha_ri": 0, **over})


def test_eda_copies_are_fixed_by_seed_and_position_and_keep_digits():
    opts = eda(n_aug=8, alpha_sr=0.2, alpha_ri=0.2, alpha_rs=0.2, alpha_rd=0)
    one = eda_copies(TEXT, opts, 0, 7, syn, STOP)
    assert len(one) == 8 and one == eda_copies(TEXT, opts, 0, 7, syn, STOP)
    assert one != eda_copies(TEXT, opts, 0, 8, syn, STOP)  # another example's draws
    assert one != eda_copies(TEXT, opts, 1, 7, syn, STOP)  # another data_seed
    assert len(set(one)) > 4 and TEXT not in one  # n = 2 per operation: each copy differs
    for copy in one:  # SR / RI / RS keep every number, apostrophe and mark of punctuation
        assert re.findall(r"\d+", copy) in (["3", "2"], ["2", "3"])
        assert "Smith's" in copy and copy.endswith("?") and "Dr." in copy


def test_augment_training_is_independent_of_order_and_nested_across_ratios():
    train = [{"text": f"word{i} the quick dog number {i}", "label": i % 2} for i in range(30)]
    positions = list(range(100, 130))
    opts = eda(ratio=0.5, n_aug=2, alpha_rs=0.3, alpha_rd=0)  # swaps keep every word
    out, pos = augment_training(train, positions, opts, 0)
    assert out[:30] == train and pos[:30] == positions and len(out) == 30 + 15 * 2
    for e, p in zip(out[30:], pos[30:], strict=True):
        assert e["label"] == train[p - 100]["label"] and str(p - 100) in e["text"].split()
    order = list(range(30))
    random.Random(1).shuffle(order)
    out2, pos2 = augment_training([train[i] for i in order], [positions[i] for i in order], opts, 0)
    copies = sorted((p, e["text"]) for p, e in zip(pos[30:], out[30:], strict=True))
    assert sorted((p, e["text"]) for p, e in zip(pos2[30:], out2[30:], strict=True)) == copies
    half, full = chosen(positions, 0.5, 0), chosen(positions, 1.0, 0)
    assert len(half) == 15 and set(half) < set(full) and chosen(positions, 0.0, 0) == []
    assert augment_training(train, positions, eda(ratio=0.0, alpha_rs=0.1), 0) == (train, positions)


def _task(data: Path, **over) -> ClassificationTask:
    entry = {"dataset": str(data), "kind": "classification", **over}
    return validate(ClassificationTask, entry)


def test_copies_reach_the_training_set_only(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", n=60)
    plain = load_task_data(_task(data, train_size=24, half="a"))
    aug = {"method": "eda", "ratio": 1.0, "n_aug": 3, "alpha_sr": 0, "alpha_ri": 0}
    got = load_task_data(_task(data, train_size=24, half="a", augment=aug))
    n = len(plain.train)
    assert got.train[:n] == plain.train and got.train_index[:n] == plain.train_index
    assert len(got.train) == 4 * n and sorted(set(got.train_index)) == sorted(plain.train_index)
    # validation, test and the held-out half are exactly what they are without augmentation
    assert got.validation == plain.validation and got.test == plain.test
    assert got.heldout == plain.heldout and got.heldout_index == plain.heldout_index
    held = {e["text"] for e in plain.heldout + plain.validation + plain.test}
    assert not {e["text"] for e in got.train[n:]} & held - {e["text"] for e in plain.train}
    # ratio 0: exactly the original training set
    zero = load_task_data(_task(data, train_size=24, half="a", augment={**aug, "ratio": 0}))
    assert zero.train == plain.train and zero.train_index == plain.train_index


def test_augment_is_a_grid_axis_and_absent_leaves_run_ids_alone(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl")
    task = {
        "dataset": str(data),
        "kind": "classification",
        "augment": {"method": "eda", "ratio": [0, 0.5, 1.0], "alpha_sr": 0, "alpha_ri": 0},
    }
    spec = write_spec(tmp_path / "s.yaml", name="s", output_dir=str(tmp_path / "out"),
                      models="minilm-l6", tasks=task, methods="full")  # fmt: skip
    runs = expand(load_spec(spec))
    assert [r.task.augment.ratio for r in runs] == [0, 0.5, 1.0]
    assert len({r.run_id for r in runs}) == 3
    assert runs[0].config["task"]["augment"]["ratio"] == 0
    plain = _task(data)
    assert plain.augment is None and "augment" not in identity(plain)


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ({"method": "eda", "alpha_x": 0.1}, r"tasks\[0\]\.augment\.eda\.alpha_x: unknown key"),
        ({"method": "eda", "alpha_rs": 1.5}, r"augment\.eda\.alpha_rs: .*less than or equal to 1"),
        ({"method": "eda", "n_aug": 0}, r"augment\.eda\.n_aug: .*greater than 0"),
        ({"method": "eda", "ratio": -0.1}, r"augment\.eda\.ratio: .*greater than or equal to 0"),
        ({"method": "eda", "alpha_sr": 0, "alpha_ri": 0, "alpha_rs": 0, "alpha_rd": 0},
         r"augment\.eda: every alpha is 0"),
        ({"method": "mixup"}, r"tasks\[0\]\.augment: expected a mapping with method: eda or back_"),
        ("eda", r"augment: expected a mapping with method"),
        ({"method": "eda", "ratio": []}, r"tasks\[0\]\.augment\.ratio: an empty list gives no runs"),
        ({"method": "back_translation"}, r"augment\.back_translation\.model: Field required"),
        ({"method": "back_translation", "model": "no-such-model"},
         r"augment\.back_translation: unknown model 'no-such-model'"),
        ({"method": "back_translation", "model": "gpt-d2"}, r"untrained ladder config"),
        ({"method": "back_translation", "model": "http://127.0.0.1:9/v1#m", "n_aug": 3},
         r"n_aug > 1 with temperature 0 gives n_aug equal copies"),
        ({"method": "back_translation", "model": "http://127.0.0.1:9/v1#m", "pivot": "en"},
         r"pivot 'en' is the source language"),
    ],
)  # fmt: skip
def test_bad_augment_settings_are_one_line_spec_errors(tmp_path, capsys, augment, message):
    data = write_dataset(tmp_path / "d.jsonl")
    task = {"dataset": str(data), "kind": "classification", "augment": augment}
    assert_spec_error(tmp_path, capsys, message, models="minilm-l6", tasks=task, methods="full")


def test_missing_wordnet_is_one_line_naming_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path / "nowhere"))
    data = write_dataset(tmp_path / "d.jsonl")
    task = {"dataset": str(data), "kind": "classification",
            "augment": {"method": "eda", "alpha_sr": 0.1}}  # fmt: skip
    line = assert_spec_error(tmp_path, capsys, re.escape(INSTALL), models="minilm-l6",
                             tasks=task, methods="full")  # fmt: skip
    assert "alpha_sr / alpha_ri > 0 need WordNet" in line
    # swaps and deletions alone, or nothing augmented, need no WordNet
    for augment in ({"method": "eda", "alpha_sr": 0, "alpha_ri": 0}, {"method": "eda", "ratio": 0}):
        assert _task(data, augment=augment).augment is not None


def test_lexnames_match_the_wordnet_manual():
    assert len(LEXNAMES) == 45 and lexnames_text().splitlines()[3] == "03\tnoun.Tops\t1"
    page = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not page.is_file():
        pytest.skip(f"no lexnames(5WN) manual page to compare with: {INSTALL}")
    rows = re.findall(r"^(\d\d)\t(\S+)", gzip.decompress(page.read_bytes()).decode(), re.M)
    assert [name for _, name in rows] == LEXNAMES


def test_real_wordnet_synonyms_and_eda(tmp_path):
    if problem := wordnet_problem():
        pytest.skip(problem)
    from scalelab.data.augment import english_stop_words
    from scalelab.data.wordnet import wordnet_folder, wordnet_synonyms

    folder = wordnet_folder()
    assert (folder / "lexnames").read_text() == lexnames_text() and wordnet_folder() == folder
    synonyms = wordnet_synonyms()
    assert {"fast", "speedy"} <= set(synonyms("quick")) and "quick" not in synonyms("quick")
    assert "Mile-High City" in synonyms("Denver")  # case and hyphens as WordNet has them
    text = "How far is it from Denver to Aspen , 2 states away ?"
    opts = EdaAugment(method="eda", n_aug=6, alpha_rd=0, alpha_rs=0, alpha_sr=0.3, alpha_ri=0.3)
    copies = eda_copies(text, opts, 0, 5, synonyms, english_stop_words())
    assert len(set(copies)) > 1 and all("2" in c and c.endswith(" ?") for c in copies)


def _first_use(barrier, queue) -> None:
    from scalelab.data.wordnet import wordnet_folder

    barrier.wait()
    queue.put(str(wordnet_folder()))


def test_processes_starting_together_build_one_wordnet_copy(tmp_path):
    if problem := wordnet_problem():
        pytest.skip(problem)
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_first_use, args=(barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    found = {queue.get(timeout=120) for _ in procs}
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0] and len(found) == 1
    folder = Path(found.pop())
    assert sorted(p.name for p in folder.parent.iterdir() if ".tmp-" in p.name) == []
    assert (folder / "data.noun").stat().st_size > 10_000_000 and not (
        folder / "data.noun"
    ).is_symlink()


def test_a_w2s_student_refuses_augmented_copies(tmp_path):
    from scalelab.errors import ScalelabError
    from scalelab.methods.base import METHODS

    w2s = METHODS.get("w2s")
    data = write_dataset(tmp_path / "d.jsonl")
    task = _task(data, half="b", augment={"method": "eda", "alpha_sr": 0, "alpha_ri": 0})
    with pytest.raises(ScalelabError, match=r"^task\.augment: a w2s student learns the weak"):
        w2s.check(task, w2s.params.model_validate({"labels": "@weak"}))
    w2s.check(
        task.model_copy(update={"augment": None}), w2s.params.model_validate({"labels": "@weak"})
    )
