"""Paraphrases of ShapesWorld captions: one spec per string, exact parsing, the paraphrase split, and which
wordings the U-Net and the text encoder are trained on."""

from __future__ import annotations

import numpy as np
import pytest

import dptune.shapesworld as sw
from dptune.shapesworld.grammar import (
    N_WORDINGS,
    PARAPHRASE_WORDINGS,
    TRAIN_WORDINGS,
    wording,
    wording_table,
    wordings,
)
from dptune.shapesworld.pairs import pretraining_scene, sample_training_pairs, training_scene
from dptune.shapesworld.splits import all_specs, is_id_spec


def test_every_wording_parses_back_to_its_spec():
    specs = [s for c in sw.CATEGORIES for s in all_specs(c)]
    for spec in specs:
        texts = wordings(spec)
        assert texts[0] == sw.caption(spec) and len(set(texts)) == N_WORDINGS
        for text in texts:
            assert sw.parse_prompt(text).spec == spec
    assert len(wording_table()) == N_WORDINGS * len(specs)  # no string names two specs


def test_paraphrases_say_the_same_thing_in_other_words():
    spec = sw.parse_prompt("three blue squares").spec
    assert sw.parse_prompt("3 blue squares").spec == spec
    assert sw.parse_prompt("Exactly three blue squares.").spec == spec
    rel = sw.parse_prompt("a red circle below a green square").spec
    assert sw.parse_prompt("a red circle beneath a green square").spec == rel
    assert sw.parse_prompt("red circle below green square").spec == rel
    assert sw.parse_prompt("a red circle above a green square").spec != rel
    with pytest.raises(ValueError, match="not a ShapesWorld caption.*2 blue squares"):
        sw.parse_prompt("a red circle near a green square")
    with pytest.raises(ValueError, match="wording index 6 is out of range"):
        wording(spec, N_WORDINGS)


def test_judge_reads_the_spec_so_a_paraphrase_is_judged_as_its_caption():
    for i, spec in enumerate(s for c in sw.CATEGORIES for s in all_specs(c)[:6]):
        image = sw.render_prompt(sw.caption(spec), seed=i)
        verdicts = {sw.judge_image(image, text).correct for text in wordings(spec)}
        assert verdicts == {True}


def test_paraphrase_split_is_the_id_prompts_in_unseen_wordings():
    ids, paras = sw.eval_prompts("id", 12), sw.eval_prompts("paraphrase", 12)
    assert [p.spec for p in ids] == [p.spec for p in paras]
    assert all(p.text != q.text for p, q in zip(ids, paras, strict=True))
    assert {wording_table()[p.text][1] for p in paras} == set(PARAPHRASE_WORDINGS)
    with pytest.raises(ValueError, match="paraphrase"):
        sw.eval_prompts("train", 1)


def test_unet_trains_on_training_wordings_only_and_keeps_the_scenes():
    images, captions = sample_training_pairs(40, seed=3, wordings=True)
    plain_images, plain = sample_training_pairs(40, seed=3)  # the shipped model's recipe: canonical captions
    assert np.array_equal(images, plain_images)  # the wording never changes the scene
    used = [wording_table()[c] for c in captions]
    assert {w for _, w in used} <= set(TRAIN_WORDINGS) and len({w for _, w in used}) > 1
    assert [spec for spec, _ in used] == [training_scene(i, 3)[0] for i in range(40)]
    assert plain == [sw.caption(spec) for spec, _ in used]


def test_text_pretraining_reads_every_composition_and_wording():
    draws = [pretraining_scene(i, seed=0) for i in range(400)]
    assert any(not is_id_spec(spec) for spec, _, _ in draws)  # held out from the U-Net, not from the encoder
    assert {w for _, _, w in draws} == set(range(N_WORDINGS))
    for spec, scene, _ in draws[:40]:
        assert sw.judge_image(sw.render_scene(scene), sw.caption(spec)).correct


def test_digits_are_single_tokens():
    from dptune.shapesworld.tokenizer import shapesworld_tokenizer

    tok = shapesworld_tokenizer()
    ids = tok("4 red circles").input_ids  # BOS, 4, red, circles, EOS; an unknown word would be another EOS
    assert len(ids) == 5 and ids.count(tok.eos_token_id) == 1


def test_train_base_asks_the_world_for_paraphrased_captions_only_under_paraphrases():
    from types import SimpleNamespace

    from dptune.shapesworld.train_base_config import TrainBaseConfig
    from dptune.shapesworld.train_base_phases import render_training_set

    calls = []

    def pairs(n, seed, **kw):  # a world hook; records how train-base called it
        calls.append(kw)
        return sample_training_pairs(n, seed, **kw)

    world = SimpleNamespace(sample_training_pairs=pairs)
    plain = render_training_set(world, TrainBaseConfig(num_images=8, batch_size=4))[1]
    worded = render_training_set(world, TrainBaseConfig(num_images=8, batch_size=4, paraphrases=True))[1]
    assert calls == [{}, {"wordings": True}]
    assert plain == [sw.caption(training_scene(i, 0)[0]) for i in range(8)] and worded != plain
