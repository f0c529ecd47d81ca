"""The suite's discriminative pass: a scorer without a grounding head (DiffusionITM) gets ITM only, no REC."""

from __future__ import annotations

from types import SimpleNamespace

from dptune.evaluation import suite


def test_a_scorer_without_boxes_skips_rec(monkeypatch):
    calls = []
    monkeypatch.setattr("dptune.evaluation.discriminative.evaluate_itm", lambda *a, **k: calls.append("itm") or {})
    monkeypatch.setattr("dptune.evaluation.discriminative.evaluate_rec", lambda *a, **k: calls.append("rec") or {})
    cfg = SimpleNamespace(t=250, noise_seed=0)
    sets = {"s": (["itm item"], ["rec item"])}
    with_boxes = suite._run_discriminative(SimpleNamespace(), sets, cfg, progress=False)
    assert calls == ["itm", "rec"] and {"itm", "rec"} <= set(with_boxes["s"])
    calls.clear()
    without = suite._run_discriminative(SimpleNamespace(supports_rec=False), sets, cfg, progress=False)
    assert calls == ["itm"] and "rec" not in without["s"]
