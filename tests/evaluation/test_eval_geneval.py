"""GenEval rules over given detections: counting, colour, position, exclusion, thresholds, tag averaging."""

from __future__ import annotations

import pytest

from dptune.evaluation.geneval import (
    Detection,
    filter_detections,
    geneval_score,
    geneval_verdict,
    relative_position,
)


def _det(label, x0, y0, x1, y1, score=0.95, colour=None):
    return Detection(label, (x0, y0, x1, y1), score, colour)


def test_counting_uses_the_high_threshold_and_exclusion():
    meta = {
        "tag": "counting",
        "include": [{"class": "cup", "count": 3}],
        "exclude": [{"class": "cup", "count": 4}],
    }
    three = [_det("cup", 0, 0, 10, 10), _det("cup", 20, 0, 30, 10), _det("cup", 40, 0, 50, 10)]
    assert geneval_verdict(meta, three) == (True, "")
    weak = three[:2] + [_det("cup", 40, 0, 50, 10, score=0.5)]  # 0.5 < 0.9: not counted for counting prompts
    ok, why = geneval_verdict(meta, weak)
    assert not ok and "cup>=3, found 2" in why
    four = three + [_det("cup", 60, 0, 70, 10)]
    ok, why = geneval_verdict(meta, four)
    assert not ok and "cup<4, found 4" in why
    # other tags use 0.3: the 0.5 detection counts there
    assert geneval_verdict({**meta, "tag": "two_object"}, weak)[0]


def test_at_most_16_per_class_most_confident_first():
    dets = [_det("person", i, 0, i + 1, 1, score=0.4 + i / 100) for i in range(20)]
    kept = filter_detections(dets, "single_object")["person"]
    assert len(kept) == 16 and kept[0].score == pytest.approx(0.59)


def test_colour_rule_counts_the_top_detections():
    meta = {
        "tag": "color_attr",
        "include": [
            {"class": "car", "count": 1, "color": "red"},
            {"class": "bench", "count": 1, "color": "blue"},
        ],
    }
    good = [_det("car", 0, 0, 5, 5, colour="red"), _det("bench", 10, 0, 20, 5, colour="blue")]
    assert geneval_verdict(meta, good)[0]
    swapped = [_det("car", 0, 0, 5, 5, colour="blue"), _det("bench", 10, 0, 20, 5, colour="red")]
    ok, why = geneval_verdict(meta, swapped)
    assert not ok and "expected red car>=1, found 0 red" in why
    with pytest.raises(ValueError, match="colour"):
        geneval_verdict(meta, [_det("car", 0, 0, 5, 5), _det("bench", 10, 0, 20, 5)])


def test_relative_position_formula():
    a, b = _det("dog", 0, 40, 20, 60), _det("cat", 80, 40, 100, 60)  # same row, far apart
    assert relative_position(a, b) == {"left of"} and relative_position(b, a) == {"right of"}
    up = _det("kite", 80, 0, 100, 10)
    assert relative_position(up, b) == {"above"}
    # centres 10 apart, margin 0.1 * (20 + 20) = 4 per axis -> still "left of"; overlapping -> nothing
    near = _det("dog", 70, 40, 90, 60)
    assert relative_position(near, b) == {"left of"}
    same = _det("dog", 81, 41, 101, 61)
    assert relative_position(same, b) == set()
    diag = _det("dog", 40, 0, 60, 20)  # up-left at 45 degrees: dx = dy = -36 / 56.6 -> both relations
    assert relative_position(diag, b) == {"left of", "above"}


def test_position_clause_refers_to_an_earlier_include():
    meta = {
        "tag": "position",
        "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["left of", 0]}],
    }
    cat = _det("cat", 80, 40, 100, 60)
    assert geneval_verdict(meta, [cat, _det("dog", 0, 40, 20, 60)])[0]
    ok, why = geneval_verdict(meta, [cat, _det("dog", 150, 40, 170, 60)])
    assert not ok and "expected dog left of target, found right of" in why
    ok, why = geneval_verdict(meta, [_det("dog", 0, 40, 20, 60)])  # no cat -> no target
    assert not ok and "no target for dog" in why


def test_score_is_the_mean_over_tags():
    verdicts = [
        ("counting", True),
        ("counting", False),
        ("counting", False),
        ("counting", False),
        ("colors", True),
    ]
    s = geneval_score(verdicts)
    assert s["counting"] == 0.25 and s["colors"] == 1.0 and s["overall"] == pytest.approx(0.625)
