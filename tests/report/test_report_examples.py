"""`scalelab report` for every experiment in examples/, each shrunk to tiny settings (the same
stages, methods, seeds and sweep axes; a toy corpus, a tiny random BERT, a few steps), run,
reported with no flags, and opened in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from browser import chromium, probe, screenshot
from helpers import (
    cli,
    save_tiny,
    save_tiny_math_lm,
    write_dataset,
    write_math_dataset,
    write_mc_task,
    write_mcqa_file,
)

from scalelab.grid.api import open_experiment

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _method_names(section: dict) -> set[str]:
    methods = section.get("methods") or []
    methods = [methods] if isinstance(methods, (str, dict)) else methods
    return {m if isinstance(m, str) else m["name"] for m in methods}


def _is_lm(section: dict) -> bool:
    tasks = section.get("tasks") or {}
    tasks = tasks[0] if isinstance(tasks, list) else tasks
    return "seq_len" in tasks or bool({"pretrain", "cooldown"} & _method_names(section))


def _named_tasks(section: dict, assets: dict) -> bool:
    """Several tasks in one section (corpora, multiple-choice tasks): each becomes a tiny
    one of the same name (`val_loss@news2017` columns keep their names); True if done."""
    tasks = section.get("tasks")
    if not (isinstance(tasks, list) and len(tasks) > 1 or "evaluate" in _method_names(section)):
        return False
    if isinstance(tasks, dict) and "max_length" in tasks:  # zero-shot on a classification task
        return False
    tiny = []
    for t in tasks if isinstance(tasks, list) else [tasks]:
        name = t["dataset"] if isinstance(t, dict) else t
        if isinstance(t, dict) and "seq_len" in t:
            tiny.append({"dataset": str(assets["corpus_named"](name)), "kind": "lm",
                         "seq_len": 32, "tokenizer": {"kind": "byte"},
                         "eval": {"max_tokens": 2000}})  # fmt: skip
        else:
            tiny.append({"dataset": str(assets["mc_task_named"](name))})
    section["tasks"] = tiny
    params = section.setdefault("params", {})
    if "evaluate" in _method_names(section):
        params.update(limit=8) if "limit" in params else None
    else:
        params.update(tokens=8 * 32 * 12, batch_size=8, eval_tokens=512)
    return True


def _shrink(section: dict, assets: dict[str, Path]) -> None:
    """Tiny settings in place: same methods, models (ladder) and sweep axes."""
    params = section.setdefault("params", {})
    if _named_tasks(section, assets):
        return
    if _is_lm(section):
        budgets = (section.get("tasks") or {}).get("max_train_tokens")
        section["tasks"] = {"dataset": str(assets["corpus"]), "kind": "lm", "seq_len": 32,
                            "tokenizer": {"kind": "byte"}, "eval": {"max_tokens": 2000}}  # fmt: skip
        if budgets:  # a data-budget axis stays an axis, within the tiny corpus
            section["tasks"]["max_train_tokens"] = [2000, 8000]
        budgets = params.get("tokens")  # a token-budget axis stays an axis
        tiny = [8 * 32 * 8, 8 * 32 * 16] if isinstance(budgets, list) else 8 * 32 * 12
        params.update(tokens=tiny, batch_size=8, eval_tokens=512)
        if "branch_tokens" in params:  # a stable run: longer than the branches it keeps
            params.update(tokens=8 * 32 * 24, branch_tokens=[8 * 32 * 8, 8 * 32 * 12])
        if "cooldown" in _method_names(section):  # the budget is the stable run's batch
            params.pop("batch_size")
            params.pop("eval_tokens")
            params["tokens"] = [8 * 32 * 8, 8 * 32 * 12]
    else:
        tasks = section.get("tasks") or {}
        keep = {"half": tasks.get("half")}  # weak-to-strong halves stay
        # data-scaling axes stay axes, shorter and within the tiny table (24 a class)
        if isinstance(tasks.get("train_size"), list):
            keep["train_size"] = [12, 24, 48]
        for key in ("k_per_class", "draw"):
            keep[key] = tasks[key][:2] if isinstance(tasks.get(key), list) else tasks.get(key)
        if aug := tasks.get("augment"):  # an augmentation axis stays: swaps and deletions
            keep["augment"] = {**aug, "n_aug": 2, "alpha_sr": 0, "alpha_ri": 0}  # no WordNet
        section["tasks"] = {"dataset": str(assets["data"]), "kind": "classification",
                            "max_length": 16, **{k: v for k, v in keep.items() if v is not None}}  # fmt: skip
        if "evaluate" not in _method_names(section):  # zero-shot trains nothing
            params.update(epochs=2, batch_size=8)
        else:  # the tiny table's labels are numbers: zero-shot needs words for them
            params["verbalizers"] = {"0": "red", "1": "green", "2": "blue"}
        if "active" in _method_names(section):  # rounds that fit the tiny training split
            params.update(seed_size=12, query_size=12, budget=36)


# Registered models become tiny random ones with as many blocks (cut students need them),
# wherever the spec names them: models, teacher filters, the report's reference.
TINY_FOR = {"minilm-l6": "bert6", "mpnet-base": "bert", "smollm2-135m": "math30",
            "gemma-3-270m": "math2"}  # fmt: skip
MATH = ("gsm_symbolic", "gsm8k")


def _shrink_math(raw: dict, assets: dict) -> bool:
    """A math or mcqa example: a tiny local dataset, short generations (no written shots:
    the tiny models' window is short), one epoch; rationales are kept whatever their answer
    (a random teacher reaches no gold answer). True if done."""
    tasks = raw.get("tasks") or []
    first = tasks[0] if isinstance(tasks, list) and tasks else tasks
    mcqa = isinstance(first, dict) and first.get("kind") == "mcqa"
    if not (isinstance(first, dict) and (first.get("dataset") in MATH or mcqa)):
        return False
    raw["tasks"] = [{"dataset": str(assets["math_data"]), "kind": "math"}]
    if mcqa:
        raw["tasks"] = [{"dataset": str(assets["mcqa_data"]), "kind": "mcqa", "train_size": 16,
                         "validation_size": 4, "test_size": 6}]  # fmt: skip
    for section in raw["stages"].values():
        methods = section.get("methods") or []
        for m in [methods] if isinstance(methods, dict) else methods:
            if isinstance(m, dict) and m.get("name") in ("rationales", "evaluate"):
                m.update(
                    max_tokens=12, **({"consistency": "flag"} if m["name"] == "rationales" else {})
                )
                if mcqa:
                    m["shots"] = 1 if m.get("prompt") == "direct_mc" else 0
        if "rationale_distill" in _method_names(section):
            section.setdefault("params", {}).update(epochs=1, batch_size=8, max_length=200,
                                                    dtype="fp32")  # fmt: skip
    return True


def tiny_example(example: Path, tmp: Path, assets: dict[str, Path]) -> Path:
    """`example` with tiny settings, written under `tmp`."""
    text = example.read_text()
    for name, tiny in TINY_FOR.items():
        text = text.replace(name, str(assets[tiny]))
    raw = yaml.safe_load(text)
    raw.update(output_dir=str(tmp / "out"), runtime={"workers": 2, "threads": 1})  # 2 cores
    if _shrink_math(raw, assets):
        path = tmp / example.name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path
    raw.pop("tasks", None) if "stages" in raw else None
    for section in raw["stages"].values() if "stages" in raw else [raw]:
        _shrink(section, assets)
    path = tmp / example.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    from scalelab.testing import make_corpus

    root = tmp_path_factory.mktemp("assets")
    seeds = iter(range(1, 100))  # each named corpus its own sentences
    return {"corpus": make_corpus(root / "corpus", n_lines=600),
            "corpus_named": lambda name: make_corpus(root / name, 600, seed=next(seeds)),
            "mc_task_named": lambda name: write_mc_task(root / "mc", name, n=8),
            "bert": save_tiny(root / "bert", "bert"),
            "bert6": save_tiny(root / "bert6", "bert", n_layer=6),
            "data": write_dataset(root / "data.jsonl", n=90),
            "math30": save_tiny_math_lm(root / "math30", n_layer=30),
            "math2": save_tiny_math_lm(root / "math2", seed=1),
            "math_data": write_math_dataset(root / "math_data"),
            "mcqa_data": write_mcqa_file(root / "qa.jsonl", 30)}  # fmt: skip


class _Reports(dict):
    """example name -> (tiny spec, report.html), each example run and reported the first
    time a test asks for it (so `-k quickstart` builds one example, and `--durations` shows
    what each costs)."""

    def __init__(self, tmp_path_factory, assets) -> None:
        super().__init__()
        self._factory, self._assets = tmp_path_factory, assets

    def __missing__(self, name: str) -> tuple[Path, Path]:
        example = REPO / "examples" / f"{name}.yaml"
        tmp = self._factory.mktemp(name)
        spec = tiny_example(example, tmp, self._assets)
        code, _, err = cli("run", spec, "--quiet")
        assert code == 0, (example.name, err)
        # no flags but fewer bootstrap refits (200 by default): the bands' presence is
        # checked here, their coverage in tests/analysis
        code, _, err = cli("report", spec, "--bootstrap", "40")
        assert code == 0, (example.name, err)
        exp = open_experiment(spec)
        self[name] = (spec, Path(exp.spec.output_dir) / f"{exp.spec.name}-report" / "report.html")
        return self[name]


@pytest.fixture(scope="module")
def reports(tmp_path_factory, assets) -> dict[str, tuple[Path, Path]]:
    return _Reports(tmp_path_factory, assets)


# What each example's report must show, beyond the set-up block.
EXPECT = {
    "quickstart": ["Loss vs model size", "Learning curves", "Fitted laws", "training tokens a run",
                   "Inside training", "L2 norm of each layer"],
    "finetune_trec": ["Classification", "worst class (test)", "confusion matrix (test) of the "
                      "best run", "test_macro_f1 95% CI", "Validation accuracy of the current weights",
                      "Inside training"],
    "finetune_packing": ["Classification", "packing=True", "packing=False"],
    "sweep_trec": ["Classification", "Sweep", "the best cell on validation",
                   "train 72 / validation 9 / test 9 examples"],  # the tiny table's splits
    "data_budget": ["Loss vs model size", "Learning curves", "max_train_tokens=2000"],
    "pretrain_then_finetune": ["Set-up (stage base)", "Set-up (stage tuned)",
                               "Classification (stage tuned)", "Learning curves (stage base)",
                               "/ validation 9 / test 9 examples"],
    "distill_wikitext": ["<h2>The answer: the smallest model that beats gpt-d6/pretrain</h2>",
                         "Reference <b>gpt-d6/pretrain</b>", "kd-both", "cut-d8",
                         "blocks [0, 4, 7]",
                         "one panel per method, shared axes",
                         "Loss vs model size (stage kd)"],
    "fair_ladder": ["Best params.lr per model (the sweep", "Learning-rate transfer (stage sweep)",
                    "Cooldown branches vs cosine", "fewer tokens than the cosine grid"],
    "distill_law": ["The answer: the smallest model that beats gpt-d3 tokens=",
                    "When to distill: the distillation scaling law"],
    "distill_trec": ["The answer: the smallest model that comes within 0.01 of", "cut-minilm-kd",
                     "ladder-kd", "Classification (stage cut)"],
    "loss_to_loss": ["loss-to-loss: val_loss@news2017 vs val_loss@wikitext2",
                     "<h2>Evaluations</h2>", "trained on news2017", "(n=8)",
                     "none (evaluation)",
                     "loss-to-loss: task_loss@openbookqa vs val_loss@wikitext2"],
    "rationale_math": ["The answer: the smallest model that beats", "tinyllm", "answers_only",
                       "Exact match (math answers) (stage students)", "test_exact_match math_data (4-shot)"],
    "rationale_math_gpu": ["The answer: the smallest model that beats", "tinyllm", "gold",
                           "Exact match (math answers)"],
    "rationale_mc": ["The answer: the smallest model that beats", "tinyllm", "answers_only",
                     "Exact match (written option letters) (stage students)", "direct"],
    "data_centric_trec": ["<h2>Data scaling: accuracy vs labelled examples</h2>",
                          "diminishing", "Classification (stage fewshot)",
                          "Active learning: learning curves and label saving", "random needs",
                          "Label saving at equal test accuracy", "margin", "kmeans",
                          "full (augment) ratio=0.5", "Classification (stage zeroshot)"],
    "w2s_sarcasm": ["Weak-to-strong: performance gap recovered (PGR)", "median PGR",
                    "logconf - naive", "bootstrap", "weak ceiling", "strong ceiling",
                    "where their weak supervisor was wrong", "PGR per (weak, strong) pair"],
}  # fmt: skip


def test_every_example_is_expected():
    assert {e.stem for e in EXAMPLES} == set(EXPECT)


# Examples whose report kind another example already proves in the default run (quickstart's
# ladder, finetune_trec's classification, distill_wikitext's distillation answer,
# rationale_math's rationales): `make test-all` builds them too.
SLOW = {"data_budget", "distill_trec", "finetune_packing", "rationale_math_gpu", "rationale_mc"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(EXPECT)]
)
def test_report_of_each_example(reports, name, tmp_path):
    spec, page = reports[name]
    text = page.read_text()
    for item in ["<h2>Set-up", "commit", "versions", "seeds", *EXPECT[name]]:
        assert item in text, (name, item)
    pngs = sorted(page.parent.glob("*.png"))
    assert pngs and text.count("data:image/png;base64,") == len(pngs)
    assert not re.search(r"\b[0-9a-f]{16}\b", re.sub(r"base64,[^\"]+", "", text)), "a run hash"
    if chromium() is None:
        pytest.skip("no Chromium to open the page: apt-get install chromium")
    if "The answer" in text:  # it leads the page, right after the title
        assert re.findall(r"<h2>(.*?)</h2>", text)[0].startswith("The answer")
    seen = probe(page)
    assert seen["images"] == seen["loaded"] == len(pngs), seen
    assert seen["scroll_width"] <= seen["page_width"] and seen["images_past_edge"] == 0, seen
    assert all(w >= 600 for w in seen["image_widths"][:1]), seen  # figures fill the column
    shot = screenshot(page, tmp_path / f"{name}.png")
    assert shot.stat().st_size > 10_000


def test_curve_ends_in_the_tables_evaluation(reports):
    spec, _ = reports["quickstart"]
    runs, curves = open_experiment(spec).tables()
    for _, r in runs.iterrows():
        c = curves[curves["run_id"] == r["run_id"]].sort_values("step")
        assert c["step"].iloc[0] == 0  # the untrained model: where the curve starts
        assert c["val_loss"].iloc[-1] == r["val_loss"]  # the same evaluation, not a nearby one
        assert c["val_loss_periodic"].iloc[-1] != r["val_loss"]  # the cheap pass, kept beside


def test_kept_step_of_a_classifier_is_the_tables_val_accuracy(reports):
    spec, _ = reports["finetune_trec"]
    runs, curves = open_experiment(spec).tables()
    for _, r in runs.iterrows():
        c = curves[(curves["run_id"] == r["run_id"]) & (curves["step"] == r["best_step"])]
        assert len(c) == 1 and c["val_accuracy"].iloc[0] == r["val_accuracy"]
