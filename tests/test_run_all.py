"""bench/run_all checks every target the README's Benchmarks section gives, not only each benchmark's last line."""

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_run_all():
    loader = importlib.machinery.SourceFileLoader("bench_run_all", str(ROOT / "bench" / "run_all"))
    spec = importlib.util.spec_from_loader("bench_run_all", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run_all"] = module   # dataclasses look their module up there
    loader.exec_module(module)
    return module


RUN_ALL = load_run_all()


def test_every_target_in_the_readme_is_a_check():
    targets = RUN_ALL.readme_targets()
    checks = {name: {(c.metric, c.bound, c.value) for c in t.checks} for name, t in targets.items()}
    assert checks["sync_ingest"] == {("sync_ingest_ratio", "least", "0.5"), ("sync_ingest_cpu_ratio", "least", "0.5")}
    assert checks["bundle"] == {("bundle_peak_mb", "most", "100"), ("bundle_ratio", "least", "0.5")}
    assert checks["soak"] == {("soak_memory_growth", "most", "1.1"), ("soak_errors", "equal", "0")}
    assert checks["store_scale"] == {("store_scale_ratio", "most", "2")}
    assert checks["startup"] == {("startup_growth", "most", "1.25"), ("startup_seconds", "most", "2")}
    assert checks["motion"] == {("motion_fps_720_vs_360", "least", "0.7"), ("motion_min_f1", "least", "0.9")}
    assert checks["camera"] == {("record_motion_cpu_ratio_main", "most", "6"), ("record_motion_cpu_ratio", "most", "3"),
                                ("record_cpu_ratio", "most", "1.5")}
    assert checks["fanout"] == {("fanout_p99_ratio_100", "most", "3"), ("fanout_p99_ratio_1000", "most", "3"),
                                ("fanout_p99_ratio", "most", "3")}
    assert checks["city"] == set()


def test_a_benchmark_passes_only_when_every_check_does():
    bundle = RUN_ALL.readme_targets()["bundle"]
    assert bundle.judge({"bundle_ratio": "0.8", "bundle_peak_mb": "60.0"}) == "pass"
    assert bundle.judge({"bundle_ratio": "0.8", "bundle_peak_mb": "140.0"}) == "fail"
    assert bundle.judge({"bundle_ratio": "0.8"}) == "fail"   # a target's line not printed
    assert bundle.failures({"bundle_ratio": "0.8"}) == ["bundle_peak_mb=not printed (wants most 100)"]
    assert bundle.judge({"bundle_ratio": "x", "bundle_peak_mb": "60"}) == "fail"
    assert RUN_ALL.readme_targets()["city"].judge({"nodes": "300"}) == "unknown"   # no target: nothing to judge


def test_targets_from_a_paragraph_naming_several_lines():
    text = """## Benchmarks

    .venv/bin/python bench/demo.py     # a demo

prints `a_ratio=<x / y>` (target at least 0.5), `b_count=<n>` and last `c_ratio=<z>` (target at most 3 with
`errors=0`; a note).

## Next
"""
    target = RUN_ALL.readme_targets(text)["demo"]
    assert target.metric == "c_ratio"
    assert {(c.metric, c.bound, c.value) for c in target.checks} == {
        ("a_ratio", "least", "0.5"), ("c_ratio", "most", "3"), ("errors", "equal", "0")}
    assert target.judge({"a_ratio": "0.6", "b_count": "9", "c_ratio": "2.5", "errors": "0"}) == "pass"
    assert target.judge({"a_ratio": "0.4", "b_count": "9", "c_ratio": "2.5", "errors": "0"}) == "fail"
