"""benchmarks/serve_load.py --quick end to end: a real server, 32 clients for ~5 s, valid and
malformed requests mixed. A smoke test, not a measurement: it asserts what must hold at any
speed (no 5xx, every valid request answered 200, every malformed one its 4xx)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"


def test_serve_load_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_serve_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "serve_load.json"
    code = module.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert code == 0, printed
    checks = result["checks"]
    assert checks["no_5xx"] and checks["every_valid_request_got_200"], printed
    assert checks["every_malformed_request_got_its_4xx"] and checks["no_transport_errors"]
    assert result["valid_requests"] > 0 and result["malformed_requests"] > 0
    assert result["config"]["clients"] == 32
    assert {"start", "middle", "end"} <= set(result["rss_mb"])
    assert "requests/s" in printed
