"""Bad input, one case per kind of failure: one `error:` line naming the field or file,
exit status 2, nothing written. (tests/test_fuzz_bad_input.py throws hundreds more.)"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import cli, tiny_lm_spec, write_spec

from scalelab.config import error_line, load_yaml
from scalelab.data.tasks import parse_task
from scalelab.errors import LINE_LIMIT, ScalelabError, shown
from scalelab.grid.spec import MAX_SEED, check_output_dir, load_spec
from scalelab.models.registry import ModelRef, model_path, resolve_model


def refused(capsys, *args) -> str:
    """Run the CLI; assert the promise (exit 2, one short `error:` line); return the line."""
    code, _, err = cli(*args, capsys=capsys)
    assert code == 2, err
    line = err.removesuffix("\n")  # at most LINE_LIMIT characters, the newline aside
    assert "\n" not in line and line.startswith("error: ") and len(line) <= LINE_LIMIT, err
    return err


@pytest.fixture
def spec(tmp_path, corpus):
    """spec(**over) -> a tiny LM spec file with `over` applied, output in tmp/out."""
    return lambda **over: tiny_lm_spec(tmp_path / "exp.yaml", corpus, tmp_path / "out", **over)


# --- what used to end in a traceback ----------------------------------------------------


def test_a_spec_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    err = refused(capsys, "run", path, "--dry-run")
    assert "exp.yaml is not UTF-8 text (byte 0xe9 at offset 9)" in err


def test_deep_nesting_is_refused_without_recursing(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nparams: {lr: " + "[" * 5000 + "]" * 5000 + "}\n")
    assert "nesting deeper than 64 levels" in refused(capsys, "run", path, "--dry-run")


@pytest.mark.parametrize("where", ["spec", "dataset", "output_dir", "model", "tokenizer"])
def test_names_longer_than_255_bytes(tmp_path, capsys, spec, corpus, where):
    long = str(tmp_path / ("x" * 300))
    if where == "spec":
        err = refused(capsys, "run", long + ".yaml", "--dry-run")
        assert "spec file" in err and "longer than 255 bytes" in err
        return
    over = {
        "dataset": {"tasks": {"dataset": long, "kind": "lm"}},
        "output_dir": {"output_dir": long},
        "model": {"models": [long]},
        "tokenizer": {"tasks": {"dataset": str(corpus), "kind": "lm",
                                "tokenizer": {"kind": "pretrained", "path": long}}},
    }[where]  # fmt: skip
    err = refused(capsys, "run", spec(**over), "--dry-run")
    # A long model name is no path at all: it is an unknown model.
    assert ("unknown model" if where == "model" else "longer than 255 bytes") in err
    assert {"model": "models[0]", "tokenizer": "tokenizer.path"}.get(where, where) in err


def test_output_dir_that_is_a_file_or_has_a_nul(tmp_path, capsys, spec, corpus):
    a_file = corpus / "train.txt"
    assert "output_dir: is not a folder" in refused(
        capsys, "run", spec(output_dir=str(a_file)), "--dry-run"
    )
    err = refused(capsys, "run", spec(output_dir=str(a_file / "sub")), "--dry-run")
    assert "output_dir: lies under" in err and "which is not a folder" in err
    assert "output_dir: the path contains a NUL character" in refused(
        capsys, "run", spec(output_dir="out\0put"), "--dry-run"
    )


def test_a_read_only_output_dir(tmp_path, capsys, spec, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the permission check say no
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and Path(p) != locked)
    else:
        locked.chmod(0o500)
    err = refused(capsys, "run", spec(output_dir=str(locked / "out")), "--dry-run")
    assert "output_dir: the folder" in err and "is not writable" in err
    assert not (locked / "out").exists()


def test_seeds_are_32_bit(tmp_path, capsys, spec):
    err = refused(capsys, "run", spec(seeds=[2**64]), "--dry-run")
    assert "seeds.0: Input should be less than or equal to 4294967295" in err
    assert MAX_SEED == 2**32 - 1
    assert cli("run", spec(seeds=[MAX_SEED]), "--dry-run")[0] == 0
    assert not (tmp_path / "out").exists()


def test_classification_data_seed_is_32_bit(tmp_path, capsys):
    spec = write_spec(tmp_path / "c.yaml", name="c", output_dir=str(tmp_path / "out"),
                      models="minilm-l6", methods="full",
                      tasks={"dataset": "trec", "data_seed": 2**32})  # fmt: skip
    err = refused(capsys, "run", spec, "--dry-run")
    assert "data_seed: Input should be less than or equal to 4294967295" in err
    assert not (tmp_path / "out").exists()


def test_empty_classification_splits_and_oversized_subsamples_are_spec_errors(tmp_path, capsys):
    rows = "".join(f'{{"text": "example {i}", "label": {i % 2}}}\n' for i in range(6))
    (tmp_path / "six.jsonl").write_text(rows)  # 80/10/10 per label leaves one split empty

    def spec_for(**task):
        return write_spec(tmp_path / "c.yaml", name="c", output_dir=str(tmp_path / "out"),
                          models="minilm-l6", methods="full",
                          tasks={"dataset": str(tmp_path / "six.jsonl"),
                                 "kind": "classification", **task})  # fmt: skip

    err = refused(capsys, "run", spec_for(), "--dry-run")
    assert "six.jsonl: the validation split is empty (4 train, 0 validation, 2 test" in err
    rows += "".join(f'{{"text": "more {i}", "label": {i % 2}}}\n' for i in range(14))
    (tmp_path / "six.jsonl").write_text(rows)  # 20 rows: 16/2/2
    err = refused(capsys, "run", spec_for(train_size=17), "--dry-run")
    assert "task.train_size 17 is larger than the train split (16)" in err
    assert cli("run", spec_for(train_size=16), "--dry-run")[0] == 0
    assert not (tmp_path / "out").exists()


# --- typer's usage errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["--no-such"], "error: No such option: --no-such (see 'scalelab run --help')"),
        (["--workers", "x"], "error: Invalid value for '--workers'"),
        (["--workers", "0"], "error: Invalid value for '--workers': Input should be greater"),
        (["--dry-run=1"], "error: Option '--dry-run' does not take a value"),
    ],
)
def test_usage_errors_are_one_line(capsys, spec, args, message):
    assert refused(capsys, "run", spec(), *args).startswith(message)


def test_help_still_prints(capsys):
    code, out, err = cli("run", "--help", capsys=capsys)
    assert code == 0 and "Usage: scalelab run" in out and "--dry-run" in out and not err
    code, out, _ = cli("--help", capsys=capsys)
    assert code == 0 and "Commands" in out


# --- a FIFO, a device, a huge file ------------------------------------------------------


def test_a_fifo_spec_is_refused_not_read(tmp_path, capsys):
    fifo = tmp_path / "exp.yaml"
    os.mkfifo(fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=cli("run", fifo, "--dry-run")),
                              daemon=True)  # fmt: skip
    worker.start()
    worker.join(timeout=30)
    assert "out" in result, "reading the FIFO blocked"
    assert result["out"][0] == 2
    assert "exp.yaml: it is not a regular file" in capsys.readouterr().err


def test_a_device_and_a_huge_spec_are_refused(tmp_path, capsys):
    assert "/dev/zero: it is not a regular file" in refused(capsys, "run", "/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("name: x\ndescription: " + "x" * 1_000_001 + "\n")
    assert "is larger than 1,000,000 bytes" in refused(capsys, "run", big)


# --- accepted at validation, then failed in the run -------------------------------------


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x00\x01\x02" * 100, "is not UTF-8 text (a NUL byte at offset 0)"),
        ("Caf\xe9 cr\xe8me\n".encode("latin-1") * 20, "is not UTF-8 text (byte 0xe9"),
        (b"", "is empty"),
        (b"The cat sat.\nA dog ran.\nIt was red.\n", "a split has fewer bytes than seq_len"),
    ],
    ids=["binary", "latin1", "empty", "three-lines"],
)
def test_dataset_files_no_run_could_use(tmp_path, capsys, spec, content, message):
    data = tmp_path / "data.txt"
    data.write_bytes(content)
    err = refused(capsys, "run", spec(tasks={"dataset": str(data), "kind": "lm", "seq_len": 32}))
    assert "data.txt" in err and message in err
    assert not (tmp_path / "out").exists()


def test_dev_null_and_folders_without_splits(tmp_path, capsys, spec):
    err = refused(capsys, "run", spec(tasks={"dataset": "/dev/null", "kind": "lm"}))
    assert "tasks[0].dataset: dataset /dev/null is not a regular file or a folder" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("text\n")
    err = refused(capsys, "run", spec(tasks={"dataset": str(tmp_path / "notes"), "kind": "lm"}))
    assert "needs train/valid/test text files" in err and "missing: train, validation, test" in err
    err = refused(capsys, "run", spec(tasks={"dataset": str(tmp_path / "notes" / "a.txt"),
                                             "kind": "classification"}))  # fmt: skip
    assert "a.txt is not a table file" in err


def test_three_lines_that_are_long_enough_pass(tmp_path, capsys, spec):
    data = tmp_path / "data.txt"
    data.write_text(("word " * 20 + "\n") * 3)  # each split one 101-byte line, seq_len 32
    assert cli("run", spec(tasks={"dataset": str(data), "kind": "lm", "seq_len": 32}),
               "--dry-run")[0] == 0  # fmt: skip


def test_an_offline_hub_model_fails_fast(tmp_path, capsys, spec, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    err = refused(capsys, "run", spec(models=["some-org/some-model"]), "--dry-run")
    assert (
        "models[0]: Hub model 'some-org/some-model' is not in the local Hugging Face cache" in err
    )
    assert "HF_HUB_OFFLINE" in err and time.monotonic() - start < 10
    # No network without the flag: the same, saying so.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("scalelab.data.catalog.hub_reachable", lambda: False)
    with pytest.raises(ScalelabError, match="the Hub is unreachable"):
        resolve_model("some-org/some-model")
    # A run that gets to load one (the network went down since) fails fast with one line.
    with pytest.raises(ScalelabError, match="Hub model 'org/m@v1' is not in the local"):
        model_path(ModelRef("org/m@v1", "hub", path="org/m", revision="v1"))


def test_a_cached_hub_model_needs_no_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--org--cached" / "snapshots" / "abc").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("org/cached").kind == "hub"


def test_a_missing_pretrained_tokenizer(tmp_path, capsys, spec, corpus, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for path, message in [
        (str(tmp_path / "no-tokenizer"), "no such folder"),
        (str(corpus / "train.txt"), "not a folder"),
        ("org/tokenizer", "no such folder, and as a Hub name it is not in the local Hugging"),
    ]:
        task = {"dataset": str(corpus), "kind": "lm",
                "tokenizer": {"kind": "pretrained", "path": path}}  # fmt: skip
        err = refused(capsys, "run", spec(tasks=task), "--dry-run")
        assert "tasks[0]: tokenizer.path: " + message in err


def test_cuda_without_a_gpu(tmp_path, capsys, spec, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # certainly no GPU, on any machine
    err = refused(capsys, "run", spec(runtime={"device": "cuda"}), "--dry-run")
    assert "runtime.device: 'cuda' but this machine has no CUDA device" in err
    assert "CUDA_VISIBLE_DEVICES" in err
    # Runs that ray places on other machines are not judged by this one.
    ray = {"device": "cuda", "executor": "ray"}
    assert load_spec(spec(runtime=ray)).runtime.device == "cuda"


@pytest.mark.parametrize(
    "task,message",
    [
        ({"seq_len": 1e7}, "seq_len: Input should be less than or equal to 131072"),
        ({"tokenizer": {"kind": "bpe", "vocab_size": 10**30}}, "vocab_size: Input should be less"),
        ({"tokenizer": {"kind": "bpe", "vocab_size": "1e30"}}, "vocab_size"),
    ],
)
def test_sizes_are_bounded(tmp_path, capsys, spec, corpus, task, message):
    full = {"dataset": str(corpus), "kind": "lm", "seq_len": 32, **task}
    assert message in refused(capsys, "run", spec(tasks=full), "--dry-run")


# --- accepted with exit 0 ---------------------------------------------------------------


def test_duplicate_keys_name_the_key_and_line(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("name: a\nmodels: gpt-d1\nname: b\n")
    err = refused(capsys, "run", path, "--dry-run")
    assert "line 3, column 1: duplicate key 'name' (first at line 1)" in err
    # A merge (`<<`) may be overridden: that is what it is for.
    merged = load_yaml("base: &b {lr: 1, wd: 2}\nparams: {<<: *b, lr: 3}\n", "x.yaml")
    assert merged["params"] == {"lr": 3, "wd": 2}


def test_negative_seed(tmp_path, capsys, spec):
    assert "seeds.0: Input should be greater than or equal to 0 (got -1)" in refused(
        capsys, "run", spec(seeds=[-1]), "--dry-run"
    )


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-rf", "a/b", "x" * 100_000])
def test_experiment_names_are_safe(tmp_path, capsys, spec, name):
    err = refused(capsys, "run", spec(name=name), "--dry-run")
    assert "exp.yaml: name: String should" in err
    assert not (tmp_path / "out").exists()


def test_names_up_to_100_characters_are_fine(tmp_path, spec):
    assert load_spec(spec(name="a" + "b" * 99)).name == "a" + "b" * 99


def test_output_dir_may_not_land_in_system_folders(tmp_path, capsys, spec, monkeypatch):
    monkeypatch.chdir(tmp_path)
    up = "../" * len(tmp_path.parts)  # from the cwd to / and past it
    for where, system in [(up + "etc", "/etc"), ("/proc/x", "/proc"), (up + "sys", "/sys"),
                          ("/dev/shm/out", "/dev"), ("/", "/")]:  # fmt: skip
        err = refused(capsys, "run", spec(output_dir=where), "--dry-run")
        assert f"in the system folder {system}" in err, err
    link = tmp_path / "link"
    link.symlink_to("/etc")
    assert "in the system folder /etc" in refused(capsys, "run", spec(output_dir=str(link)))
    # The CLI's override goes through the same check.
    err = refused(capsys, "run", spec(), "--dry-run", "--output-dir", "/etc/results")
    assert "output_dir: resolves to /etc/results, in the system folder /etc" in err


def test_relative_output_dir_is_relative_to_the_cwd(tmp_path, monkeypatch):
    """Kept as it was: a relative output_dir is resolved against the current folder."""
    monkeypatch.chdir(tmp_path)
    assert check_output_dir("results/a") == tmp_path / "results" / "a"
    assert check_output_dir("../" + tmp_path.name + "/r") == tmp_path / "r"


# --- a billion laughs -------------------------------------------------------------------


def test_billion_laughs_is_refused_fast_with_a_short_line(tmp_path, capsys):
    lol = '["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    lines = [f"a: &a {lol}"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)
    ]
    path = tmp_path / "exp.yaml"
    path.write_text("\n".join(lines) + "\nname: *i\n")
    assert path.stat().st_size < 1500
    start = time.monotonic()
    err = refused(capsys, "run", path, "--dry-run")
    assert "more than 100,000 values once aliases are expanded" in err
    assert time.monotonic() - start < 10


def test_recursive_aliases_are_refused():
    with pytest.raises(ScalelabError, match=r"alias \*p refers to itself"):
        load_yaml("params: &p {lr: *p}\n", "x.yaml")


def test_echoed_values_are_cut_to_80_characters(tmp_path):
    huge = {"k": ["v" * 1000] * 300}  # 300 KB: under the 1 MB cap on a spec
    write_spec(tmp_path / "exp.yaml", name=huge, models="gpt-d1")
    with pytest.raises(ScalelabError) as info:
        load_spec(tmp_path / "exp.yaml")
    assert "name: Input should be a valid string (got {'k': ['vvv" in str(info.value)
    assert len(str(info.value)) < 200
    assert len(shown("x" * 10**6)) <= 80 and len(shown([[["x" * 10**6] * 10**3]])) <= 80
    with pytest.raises(ScalelabError) as info:
        parse_task([huge], "tasks[0]")
    assert len(str(info.value)) < 200


def test_error_line_cuts_long_keys():
    from pydantic import ValidationError

    from scalelab.grid.spec import ExperimentSpec

    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate({"name": "x", "k" * 10_000: 1})
    line = error_line(info.value)
    assert line.endswith(": unknown key") and len(line) < 60


def test_spec_text_round_trips_through_the_loader(tmp_path):
    """The limited loader reads what yaml.safe_load reads, for a real spec."""
    text = (Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml").read_text()
    assert load_yaml(text, "quickstart.yaml") == yaml.safe_load(text)


def test_integers_past_64_bits_and_absurd_budgets_are_refused(tmp_path, capsys, spec):
    # 1e29 tokens written out trained "forever"; any int past 2^63 - 1 is refused by the
    # shared config.Strict, an absurd but 64-bit budget by the method's own bound.
    err = refused(capsys, "run", spec(params={"tokens": 10**29, "batch_size": 8}), "--dry-run")
    assert "params.tokens: integers must be at most 2^63 - 1" in err
    err = refused(capsys, "run", spec(params={"tokens": 10**15, "batch_size": 8}), "--dry-run")
    assert "params.tokens" in err and "less than or equal to 100000000000000" in err
    err = refused(capsys, "run", spec(), "--workers", "99999999999")
    assert "--workers" in err and "4096" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"runtime": {"wrokers": 2}}, "runtime.wrokers: unknown key (did you mean 'workers'?)"),
        (
            {"tasks": {"dataset": "trec", "max_lenght": 32}},
            "tasks[0].max_lenght: unknown key (did you mean 'max_length'?)",
        ),
        ({"runtime": {"colour": 1}}, "runtime.colour: unknown key"),  # nothing close: no guess
    ],
)
def test_an_unknown_key_names_the_closest_field(tmp_path, capsys, fields, line):
    spec = {
        "name": "x",
        "models": "gpt-d1",
        "tasks": {"dataset": "wikitext2"},
        "methods": "pretrain",
    }
    code, _, err = cli("run", write_spec(tmp_path / "s.yaml", **{**spec, **fields}), "--dry-run",
                       capsys=capsys)  # fmt: skip
    assert code == 2 and err.strip().endswith(line), err
