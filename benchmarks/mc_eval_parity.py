"""Multiple-choice evaluation: scalelab against lm-evaluation-harness 0.4.13, side by side.

For each (model, task, shots), in one process: lm-eval's harness (`lm_eval_ref.run_lm_eval`
on the task written by `export_for_lm_eval`) and scalelab's path (`load_mc_task` ->
`questions(shots, limit)` -> `score_questions(open_backend(model))` -> `mc_metrics`) on the
same model folder, batch size, limit and dtype (fp32). Reported per row: acc and acc_norm
of both (must be identical), the largest |Δ loglikelihood| over all requests (matched by
(doc_id, choice)), whether is_greedy agrees everywhere, and two like-for-like timings:

* scoring: scalelab's `score_questions` vs lm-eval's `HFLM.loglikelihood` (tokenizing and
  scoring the same requests);
* whole: model load + building the questions + scoring + metrics vs lm-eval's
  `simple_evaluate` wall time plus its model load (each side loads a model once per model
  and the load is counted in every row of that model, as if loaded for the row).

    python benchmarks/mc_eval_parity.py --models tiny-gpt2,smollm2-135m \\
        --tasks piqa,commonsense_qa,openbookqa --shots 0,5 --limit 40 --batch-size 16 \\
        --out benchmarks/results/mc_eval_parity.json

Models: `tiny-gpt2` (`lm_eval_ref.make_tiny_gpt2`: a random 2-layer, width-64 GPT-2 with
GPT-2's real 50,257-token BPE), `smollm2-135m` (scalelab's registered GGUF, dequantised to
fp32 by transformers on both sides), or a save_pretrained folder. Offline. Each model is
loaded once per side and warmed up with one untimed forward pass.

The arbiter for |Δ ll|: unless --no-fp64, the same questions are also scored by a float64
copy of the model (scalelab's code, untimed), and each side's largest error against it is
reported. Both sides are fp32; on a 30-layer model lm-eval's own rounding (full-sequence
logits) can exceed 1e-4 on a long continuation while scalelab's stays below it.
Exit status 1 when any row's accuracies differ, or |Δ ll| > --tol and scalelab is not the
side nearer float64.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ref():
    """benchmarks/lm_eval_ref.py as a module (benchmarks/ is not a package)."""
    if "bench_lm_eval_ref" in sys.modules:
        return sys.modules["bench_lm_eval_ref"]
    spec = importlib.util.spec_from_file_location("bench_lm_eval_ref", HERE / "lm_eval_ref.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def scalelab_model(model: str) -> str:
    """What scalelab's open_backend takes for a --models entry: a folder for `tiny-gpt2`
    and for folders, the registered name otherwise."""
    if model == "tiny-gpt2":
        return _ref().resolve_model_arg(model)["pretrained"]
    return model


def open_scalelab(model: str, batch_size: int, dtype: str = "float32"):
    """(a loaded LocalBackend, seconds to load it)."""
    from scalelab.builtins import load_builtins
    from scalelab.models.backends import open_backend

    load_builtins()
    t0 = time.perf_counter()
    backend = open_backend(scalelab_model(model), batch_size=batch_size, dtype=dtype, cache=False)
    backend.module  # noqa: B018 - load now, so the load is timed here
    return backend, time.perf_counter() - t0


def warm_up(module) -> None:
    """One untimed forward of 64 tokens, so neither side's first timed call pays for
    first-use costs (kernel selection, first touch of the weights)."""
    import torch

    with torch.inference_mode():
        module(input_ids=torch.arange(64)[None] + 100)


def fp64_reference(backend):
    """A float64 copy of the backend's model, scoring by the same code (the arbiter when
    the two fp32 results differ: which one is nearer exact arithmetic)."""
    import copy

    from scalelab.models.backends.local import LocalBackend

    module = copy.deepcopy(backend.module).double()
    return LocalBackend.from_module(
        module, backend.tokenizer, batch_size=backend.batch_size, fingerprint="fp64"
    )


def run_scalelab(backend, task_name: str, shots: int, limit: int | None) -> dict:
    """scalelab's evaluation of one task: metrics, per-request rows, timings."""
    from scalelab.data.multiple_choice import load_mc_task
    from scalelab.eval.multiple_choice import mc_metrics, score_questions

    t0 = time.perf_counter()
    task = load_mc_task(task_name)
    questions = task.questions(shots, limit)
    t1 = time.perf_counter()
    scores = score_questions(backend, questions)
    t2 = time.perf_counter()
    metrics = mc_metrics(scores)
    t3 = time.perf_counter()
    requests = [
        {"doc_id": s.doc_id, "choice": i, "loglikelihood": ll, "is_greedy": g, "n_tokens": n}
        for s in scores
        for i, (ll, g, n) in enumerate(zip(s.ll, s.greedy, s.n_tokens, strict=True))
    ]
    return {
        "acc": metrics["acc"],
        "acc_norm": metrics["acc_norm"],
        "n_docs": len(questions),
        "questions_s": t1 - t0,
        "score_s": t2 - t1,
        "eval_s": t3 - t0,
        "requests": requests,
    }


def compare(ours: dict, theirs: dict, exact: dict | None = None) -> dict:
    """Max |Δ ll| and greedy agreement over requests matched by (doc_id, choice); with
    `exact` (fp64 scores of the same requests), each side's largest error against it."""
    mine = {(r["doc_id"], r["choice"]): r for r in ours["requests"]}
    ref = {(r["doc_id"], r["choice"]): r for r in theirs["requests"]}
    if set(mine) != set(ref):
        raise SystemExit(f"request sets differ: {sorted(set(mine) ^ set(ref))[:5]}")
    deltas = [abs(mine[k]["loglikelihood"] - ref[k]["loglikelihood"]) for k in ref]
    greedy = sum(mine[k]["is_greedy"] == ref[k]["is_greedy"] for k in ref)
    out = {"n_requests": len(ref), "max_abs_dll": max(deltas), "greedy_agree": greedy}
    if exact is not None:
        truth = {(r["doc_id"], r["choice"]): r["loglikelihood"] for r in exact["requests"]}
        for name, side in (("scalelab", mine), ("lm_eval", ref)):
            out[f"fp64_err_{name}"] = max(abs(side[k]["loglikelihood"] - truth[k]) for k in ref)
    return out


def evaluate_row(model, task, shots, limit, lm, lm_load_s, backend, sl_load_s, folder, exact):
    ref = _ref()
    from scalelab.data.multiple_choice import export_for_lm_eval, load_mc_task

    lm_task = export_for_lm_eval(load_mc_task(task), folder)
    theirs = ref.run_lm_eval(
        model, str(folder), lm_task, shots, limit, lm.batch_size, lm=lm, load_s=lm_load_s
    )
    ours = run_scalelab(backend, task, shots, limit)
    truth = run_scalelab(exact, task, shots, limit) if exact is not None else None
    row = {
        "model": model,
        "task": task,
        "shots": shots,
        "limit": limit,
        "n_docs": ours["n_docs"],
        "acc_scalelab": ours["acc"],
        "acc_lm_eval": theirs["acc"],
        "acc_norm_scalelab": ours["acc_norm"],
        "acc_norm_lm_eval": theirs["acc_norm"],
        **compare(ours, theirs, truth),
        "score_s_scalelab": ours["score_s"],
        "score_s_lm_eval": theirs["loglikelihood_s"],
        "whole_s_scalelab": sl_load_s + ours["eval_s"],
        "whole_s_lm_eval": theirs["wall_s"],
        "load_s_scalelab": sl_load_s,
        "load_s_lm_eval": lm_load_s,
    }
    row["speedup_score"] = row["score_s_lm_eval"] / row["score_s_scalelab"]
    row["speedup_whole"] = row["whole_s_lm_eval"] / row["whole_s_scalelab"]
    return row


def _fp64(row: dict) -> str:
    if "fp64_err_scalelab" not in row:
        return ""
    return f" ({row['fp64_err_scalelab']:.0e} / {row['fp64_err_lm_eval']:.0e})"


def table(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    head = (
        "| model | task | shots | docs (requests) | acc scalelab / lm-eval "
        "| acc_norm scalelab / lm-eval | max abs Δll (each vs fp64) | greedy agree "
        "| scoring s scalelab / lm-eval (x) | whole run s scalelab / lm-eval (x) |\n"
        "|---|---|---:|---:|---|---|---:|---:|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['task']} | {r['shots']} | {r['n_docs']} ({r['n_requests']}) "
            f"| {r['acc_scalelab']:.4f} / {r['acc_lm_eval']:.4f} "
            f"| {r['acc_norm_scalelab']:.4f} / {r['acc_norm_lm_eval']:.4f} "
            f"| {r['max_abs_dll']:.1e}{_fp64(r)} | {r['greedy_agree']}/{r['n_requests']} "
            f"| {r['score_s_scalelab']:.2f} / {r['score_s_lm_eval']:.2f} "
            f"({r['speedup_score']:.1f}x) "
            f"| {r['whole_s_scalelab']:.1f} / {r['whole_s_lm_eval']:.1f} "
            f"({r['speedup_whole']:.1f}x) |"
        )
    return "\n".join(lines)


def _lm_eval_further_off(row: dict) -> bool:
    """A Δ beyond the tolerance is lm-eval's own rounding when scalelab is within it of
    the fp64 scores and lm-eval is not."""
    return row.get("fp64_err_scalelab", 1.0) <= row.get("fp64_err_lm_eval", 0.0)


def main(argv: list[str] | None = None) -> int:
    return _ref().offline(_main)(argv)


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tiny-gpt2,smollm2-135m")
    p.add_argument("--tasks", default="piqa,commonsense_qa,openbookqa")
    p.add_argument("--shots", default="0,5")
    p.add_argument("--limit", type=int, default=40, help="docs per task (lm-eval's --limit)")
    p.add_argument("--limits", default="", help="per model, e.g. tiny-gpt2=100,smollm2-135m=30")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tol", type=float, default=1e-4, help="allowed max |Δ loglikelihood|")
    p.add_argument(
        "--no-fp64", dest="fp64", action="store_false",
        help="skip the float64 re-scoring that says which side is nearer exact arithmetic",
    )  # fmt: skip
    p.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"),
        help="both sides' dtype (bfloat16: speed only; parity is checked in float32)",
    )  # fmt: skip
    p.add_argument("--out", help="write rows + environment as JSON here")
    a = p.parse_args(argv)

    import torch

    limits = dict(kv.split("=") for kv in a.limits.split(",") if kv)
    shots_list = [int(s) for s in a.shots.split(",")]
    rows = []
    started, load_start = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        import datasets

        datasets.config.HF_DATASETS_CACHE = Path(tmp) / "hf_datasets"  # no stale exports
        for model in a.models.split(","):
            limit = int(limits.get(model, a.limit))
            lm, lm_load_s = _ref().make_lm(model, a.batch_size, dtype=a.dtype)
            backend, sl_load_s = open_scalelab(model, a.batch_size, a.dtype)
            warm_up(lm.model), warm_up(backend.module)
            exact = fp64_reference(backend) if a.fp64 else None
            for task in a.tasks.split(","):
                for shots in shots_list:
                    row = evaluate_row(
                        model, task, shots, limit, lm, lm_load_s, backend, sl_load_s,
                        Path(tmp) / f"export_{task}", exact,
                    )  # fmt: skip
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
            del lm, backend, exact
    print()
    print(table(rows))
    bad = [
        r
        for r in rows
        if r["acc_scalelab"] != r["acc_lm_eval"]
        or r["acc_norm_scalelab"] != r["acc_norm_lm_eval"]
        or (r["max_abs_dll"] > a.tol and not _lm_eval_further_off(r))
    ]
    if a.out:
        env = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
            "loadavg_start_end": [list(load_start), list(os.getloadavg())],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "batch_size": a.batch_size,
            "dtype": a.dtype,
            "argv": sys.argv[1:] if argv is None else argv,
        }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
        print(f"wrote {a.out}")
    if bad:
        print(f"{len(bad)} row(s) differ beyond tolerance", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
