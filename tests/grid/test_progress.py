"""The progress display off a terminal (a log file, CI): plain start and step lines."""

from __future__ import annotations

from scalelab.grid import progress as pg

RID = "abcdef0123456789"
LABEL = f"{RID[:8]} gpt-d1 pretrain seed=0"  # as the grid labels runs


def _drive(steps: int) -> None:
    with pg.GridProgress(1, {RID: LABEL}) as p:
        p.on_event(RID, {"start": True})
        for s in range(1, steps + 1):
            p.on_event(RID, {"step": s, "total": steps, "loss": 3.0 - s / steps})
        p.on_done(RID, f"  done  {LABEL}")


def _plain(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.lstrip().startswith(("start", "step"))]


def test_off_a_terminal_a_run_prints_its_start_and_last_step(capsys):
    _drive(50)  # well inside LOG_EVERY_S: no lines in between
    assert _plain(capsys.readouterr().err) == [
        f"  start {LABEL}",
        f"  step  {LABEL} 50/50 loss 2.0000",
    ]


def test_step_lines_come_at_most_every_log_every_s(capsys, monkeypatch):
    monkeypatch.setattr(pg, "LOG_EVERY_S", 0.0)
    _drive(3)
    steps = _plain(capsys.readouterr().err)[1:]
    assert [line.split()[5] for line in steps] == ["1/3", "2/3", "3/3"]


def test_a_warning_names_the_run_once(capsys):
    with pg.GridProgress(1, {RID: LABEL}, enabled=False) as p:
        p.on_event(RID, {"warning": "checkpoint set aside"})
    assert capsys.readouterr().err == f"warning: run {LABEL}: checkpoint set aside\n"


def test_quiet_prints_no_progress_lines(capsys):
    with pg.GridProgress(1, {RID: LABEL}, enabled=False) as p:
        p.on_event(RID, {"start": True})
        p.on_event(RID, {"step": 1, "total": 1, "loss": 1.0})
    assert _plain(capsys.readouterr().err) == []
