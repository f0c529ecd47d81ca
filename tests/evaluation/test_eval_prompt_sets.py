"""Prompt-set loaders on tiny files written by the tests (the real files are user-provided)."""

from __future__ import annotations

import json

import pytest

from dptune.evaluation.prompt_sets import (
    CC500_LINES,
    PromptFileError,
    guess_format,
    load_coco_nss1k,
    load_prompt_set,
)


def test_shapesworld_sets_are_deterministic_and_balanced():
    a = load_prompt_set("shapesworld-ood", n_per_category=3, seed=0)
    b = load_prompt_set("shapesworld-ood", n_per_category=3, seed=0)
    assert a.kind == "shapesworld" and len(a.prompts) == 12
    assert [p.text for p in a.prompts] == [p.text for p in b.prompts]
    assert [p.category for p in a.prompts] == ["colour"] * 3 + ["count"] * 3 + ["binding"] * 3 + [
        "relation"
    ] * 3
    assert [p.text for p in load_prompt_set("shapesworld-ood", 3, seed=1).prompts] != [
        p.text for p in a.prompts
    ]
    with pytest.raises(PromptFileError, match="shapesworld-id"):
        load_prompt_set("shapesworld-test")


def test_geneval_jsonl(tmp_path):
    recs = [
        {
            "tag": "counting",
            "prompt": "a photo of three cups",
            "include": [{"class": "cup", "count": 3}],
            "exclude": [{"class": "cup", "count": 4}],
        },
        {
            "tag": "position",
            "prompt": "a photo of a dog left of a cat",
            "include": [
                {"class": "cat", "count": 1},
                {"class": "dog", "count": 1, "position": ["left of", 0]},
            ],
        },
    ]
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    ps = load_prompt_set(str(path))
    assert ps.kind == "geneval" and [p.category for p in ps.prompts] == ["counting", "position"]
    assert ps.prompts[1].meta["geneval"]["include"][1]["position"] == ["left of", 0]
    path.write_text('{"prompt": "no tag"}\n')
    with pytest.raises(PromptFileError, match="tag"):
        load_prompt_set(str(path))


def test_text_lists(tmp_path):
    comp = tmp_path / "color_val.txt"
    comp.write_text("a red book and a blue cup\n\na green bench and a yellow car\n")
    ps = load_prompt_set(str(comp))
    assert ps.kind == "t2i-compbench" and [p.category for p in ps.prompts] == ["color", "color"]
    cc = tmp_path / "CC-500.txt"
    cc.write_text("\n".join(f"a red thing {i} and a blue thing" for i in range(CC500_LINES + 20)))
    assert len(load_prompt_set(str(cc)).prompts) == CC500_LINES
    abc = tmp_path / "ABC-6K.txt"
    abc.write_text("a red bus by a green car\na green bus by a red car\n")
    assert [p.category for p in load_prompt_set(f"abc6k:{abc}").prompts] == ["abc6k", "abc6k"]
    plain = tmp_path / "mine.txt"
    plain.write_text("one\ntwo\nthree\n")
    assert [p.text for p in load_prompt_set(str(plain), max_prompts=2).prompts] == ["one", "two"]


def test_parti_and_drawbench_tables(tmp_path):
    parti = tmp_path / "PartiPrompts.tsv"
    parti.write_text(
        "Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\t\na cat\tAnimals\tSimple Detail\t\n"
    )
    ps = load_prompt_set(str(parti))
    assert [(p.text, p.category) for p in ps.prompts] == [("bond", "Abstract"), ("a cat", "Animals")]
    assert ps.prompts[1].meta["challenge"] == "Simple Detail"
    draw = tmp_path / "drawbench.csv"
    draw.write_text('Prompts,Category\n"A red colored car.",Colors\n"Two cats.",Counting\n')
    db = load_prompt_set(str(draw))
    assert db.kind == "drawbench" and [p.category for p in db.prompts] == ["Colors", "Counting"]
    (tmp_path / "x.csv").write_text("text_without_header_match,foo\na,b\n")
    with pytest.raises(PromptFileError, match="Prompt"):
        load_prompt_set(str(tmp_path / "x.csv"))


def test_coco_nss1k_categories_by_position(tmp_path):
    full = [{"captions": f"caption {i}", "name": f"COCO_val2014_{i:012d}.jpg"} for i in range(943)]
    path = tmp_path / "five_category.json"
    path.write_text(json.dumps(full))
    recs = load_coco_nss1k(path)
    assert [recs[i].category for i in (0, 154, 155, 354, 355, 555, 742, 743, 942)] == [
        "numeral",
        "numeral",
        "spatial",
        "spatial",
        "semantic",
        "mixed",
        "mixed",
        "non-relation",
        "non-relation",
    ]
    path.write_text(json.dumps(full[:5]))
    assert {r.category for r in load_coco_nss1k(path)} == {"all"}
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(PromptFileError, match="five_category"):
        load_coco_nss1k(path)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(PromptFileError, match="docs/evaluation.md"):
        load_prompt_set(f"geneval:{tmp_path / 'nope.jsonl'}")
    assert guess_format("PartiPrompts.tsv") == "parti" and guess_format("five_category.json") == "coco-nss1k"
    assert guess_format("spatial_val.txt") == "t2i-compbench" and guess_format("foo.txt") == "txt"
