"""Back-translation augmentation through the model backends: a real `scalelab serve` of a
tiny random LM (the plumbing, not translation quality), the request cache (a second call
asks the server nothing), the training set it feeds, and the one-line failures."""

from __future__ import annotations

import socket

import pytest
from helpers import save_tiny_math_lm, write_dataset

from scalelab.config import validate
from scalelab.data.augment import BackTranslationAugment
from scalelab.data.classification import ClassificationTask, load_task_data
from scalelab.errors import ScalelabError
from scalelab.models.backtranslate import back_translate, translation_prompt

TEXTS = ["Tom has 3 apples.", "How many pens does Ana have?", "Raj gets 4 more books."]


def options(model: str, **over) -> BackTranslationAugment:
    return BackTranslationAugment.model_validate(
        {"method": "back_translation", "model": model, "max_tokens": 6, **over}
    )


def test_the_prompt_names_both_languages():
    text = translation_prompt(" Where is it? ", "en", "fr")
    assert text.endswith("English: Where is it?\nFrench:") and "into French" in text
    assert "into Swahili" in translation_prompt("x", "en", "Swahili")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_math_lm(tmp_path_factory.mktemp("bt") / "model")


def test_a_local_model_translates_in_process_and_is_cached(model):
    from scalelab.models.backends import RequestCache

    got = back_translate(TEXTS, [0, 1, 2], options(str(model)), 0)
    rows = len(RequestCache())
    assert 4 <= rows <= 6 and any(got)  # 3 texts there, and the distinct pivots back
    assert back_translate(TEXTS, [0, 1, 2], options(str(model)), 0) == got
    assert len(RequestCache()) == rows


def test_back_translation_through_a_served_model_is_cached(model, tmp_path):
    from scalelab.testing import ServeProcess

    server = ServeProcess(model, tmp_path / "serve.log", name="tiny", home=tmp_path / "h")

    def asked() -> int:
        return server.get_json("/metrics", timeout=30)["requests"].get("completions", 0)

    try:
        server.wait(600)
        url = f"{server.url}#tiny"
        got = back_translate(TEXTS, [0, 1, 2], options(url), 0)
        greedy = asked()
        assert greedy >= 2  # there and back
        assert len(got) == 3 and all(len(copies) <= 1 for copies in got)
        assert any(got) and all(c.strip() and "\n" not in c for copies in got for c in copies)
        # the same requests again: answered by the SQLite request cache, nothing asked
        assert back_translate(TEXTS, [0, 1, 2], options(url), 0) == got and asked() == greedy
        # sampled copies: each seeded by (data_seed, position, copy), so cached too
        sampled = options(url, n_aug=2, temperature=1.0)
        first = back_translate(TEXTS, [0, 1, 2], sampled, 0)
        more = asked()
        assert more > greedy and back_translate(TEXTS, [0, 1, 2], sampled, 0) == first
        assert asked() == more
        # through the task: copies follow the training examples; the rest is untouched
        data = write_dataset(tmp_path / "d.jsonl", n=30)
        entry = {"dataset": str(data), "kind": "classification", "train_size": 6,
                 "augment": {"method": "back_translation", "model": url, "max_tokens": 6}}  # fmt: skip
        task = validate(ClassificationTask, entry)
        aug = load_task_data(task)
        loaded = asked()
        assert load_task_data(task) == aug and asked() == loaded  # a rerun asks nothing
    finally:
        server.stop()
    plain = load_task_data(task.model_copy(update={"augment": None}))
    n = len(plain.train)
    assert aug.train[:n] == plain.train and len(aug.train) > n
    assert aug.validation == plain.validation and aug.test == plain.test


def test_an_unreachable_endpoint_fails_with_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1#tiny"
    with pytest.raises(ScalelabError) as err:
        back_translate(TEXTS, [0, 1, 2], options(url), 0, max_retries=0)
    line = str(err.value)
    assert line.startswith(f"task.augment.model '{url}': ") and "\n" not in line
    assert "failed after 1 tries" in line


def test_a_local_folder_that_is_no_model_fails_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ScalelabError, match=r"^task\.augment\.model '.*empty': .*has no model files"
    ):
        back_translate(TEXTS, [0, 1, 2], options(str(tmp_path / "empty")), 0)
