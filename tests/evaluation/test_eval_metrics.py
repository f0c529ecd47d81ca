"""CLIP and BLIP scores on tiny random models (exact against transformers), missing weights and packages.

FID / IS: test_eval_metrics_fid.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dptune.evaluation.metrics_common import MissingDependencyError, MissingWeightsError, preprocess
from helpers import random_images

WORDS = "a an and the of to red green blue cat dog circle square photo".split()


# ---- CLIP ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from dptune.shapesworld.tokenizer import build_clip_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    tok = build_clip_tokenizer(WORDS, max_length=16)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_clip_score_matches_the_model_forward(tiny_clip_dir):
    from transformers import AutoTokenizer, CLIPModel

    from dptune.evaluation.metrics_clip import CLIPScorer

    scorer = CLIPScorer.from_transformers(tiny_clip_dir)
    images, texts = random_images(), ["a red cat", "a blue dog", "the green square"]
    out = scorer(images, texts)
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    enc = AutoTokenizer.from_pretrained(tiny_clip_dir)(texts, padding=True, return_tensors="pt")
    px = preprocess(images, 32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    with torch.no_grad():
        ref = model(**enc, pixel_values=px)
    cos = (ref.image_embeds * ref.text_embeds).sum(-1).numpy()  # both unit-normalised by the forward
    assert np.allclose([o["cosine"] for o in out], cos, atol=1e-5)
    assert [o["score"] for o in out] == pytest.approx([100 * max(c, 0.0) for c in cos], abs=1e-3)
    assert scorer(images, texts) == out  # deterministic
    assert out[0]["cosine"] != pytest.approx(scorer(images[:1], ["the green square"])[0]["cosine"])
    with pytest.raises(ValueError, match="one text per image"):
        scorer(images, texts[:2])


def test_clip_missing_weights_name_the_file(tmp_path, tiny_clip_dir):
    from dptune.evaluation.metrics_clip import CLIPScorer

    with pytest.raises(MissingWeightsError, match="does not exist"):
        CLIPScorer.from_transformers(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="config.json is missing"):
        CLIPScorer.from_transformers(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((tiny_clip_dir / "config.json").read_text())
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        CLIPScorer.from_transformers(tmp_path / "noweights")
    with pytest.raises(MissingWeightsError, match="huggingface-cli download"):
        CLIPScorer.from_transformers(None)


def _fake_open_clip(calls: dict):
    """A stand-in ``open_clip``: image embedding = red/green of the first pixel, text embedding = (words, 1)."""
    import types

    class Model(nn.Module):
        def encode_image(self, px):  # (B, 2) -> (B, 2)
            return px

        def encode_text(self, tokens):  # (B, 2) -> (B, 2)
            return tokens

    def create_model_and_transforms(arch, pretrained, force_quick_gelu, device):
        calls.update(arch=arch, pretrained=pretrained, quick_gelu=force_quick_gelu)
        return Model(), None, lambda im: torch.tensor(np.asarray(im)[0, 0, :2], dtype=torch.float32)

    def get_tokenizer(arch):
        return lambda texts: torch.tensor([[float(len(t.split())), 1.0] for t in texts])

    module = types.ModuleType("open_clip")
    module.create_model_and_transforms, module.get_tokenizer = create_model_and_transforms, get_tokenizer
    return module


def test_open_clip_missing_package_is_reported(tmp_path, monkeypatch):
    import sys

    from dptune.evaluation.metrics_clip import CLIPScorer

    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    weights = tmp_path / "open_clip_pytorch_model.bin"
    weights.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="open_clip_torch"):
        CLIPScorer.from_open_clip("ViT-H-14", weights)


def test_open_clip_path_with_the_package(tmp_path, monkeypatch):
    """The installed-package branch: a missing weights file is named; with one, the scores are the cosines of
    the model's embeddings (planted: image (3, 4) vs text (1, 1), image (0, 5) vs text (3, 1))."""
    import sys

    from dptune.evaluation.metrics_clip import CLIPScorer

    calls: dict = {}
    monkeypatch.setitem(sys.modules, "open_clip", _fake_open_clip(calls))
    weights = tmp_path / "open_clip_pytorch_model.bin"
    with pytest.raises(MissingWeightsError, match="open_clip_pytorch_model.bin"):
        CLIPScorer.from_open_clip("ViT-H-14", weights)
    weights.write_bytes(b"x")
    scorer = CLIPScorer.from_open_clip("ViT-H-14", weights, quick_gelu=True)
    assert calls == {"arch": "ViT-H-14", "pretrained": str(weights), "quick_gelu": True}
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[0, 0, 0, :2], images[1, 0, 0, :2] = (3, 4), (0, 5)
    out = scorer(images, ["cat", "a red cat"])
    cos = [7 / (5 * 2**0.5), 5 / (5 * 10**0.5)]
    assert [o["cosine"] for o in out] == pytest.approx(cos, abs=1e-6)
    assert [o["score"] for o in out] == pytest.approx([100 * c for c in cos], abs=1e-4)


# ---- BLIP ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_blip_dir(tmp_path_factory):
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval

    folder = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
        encoder_hidden_size=32,
        pad_token_id=0,
        bos_token_id=2,
        sep_token_id=3,
        eos_token_id=3,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    BlipForImageTextRetrieval(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}}))
    return folder


def test_blip_itm_and_itc_scores(tiny_blip_dir):
    from transformers import BertTokenizer, BlipForImageTextRetrieval

    from dptune.evaluation.metrics_blip import BLIPScorer

    scorer = BLIPScorer.from_pretrained(tiny_blip_dir)
    assert scorer.size == 32 and scorer.model_type == "blip"
    images, texts = random_images(4), ["a red cat", "a blue dog", "the cat", "a photo of a square"]
    out = scorer(images, texts)
    assert len(out) == 4 and all(0.0 <= o["score"] <= 100.0 and -100.0 <= o["itc"] <= 100.0 for o in out)
    # batching does not change per-image scores
    scorer.batch_size = 3
    again = scorer(images, ["a red cat", "a blue dog", "the cat", "a photo of a square"])
    assert [o["score"] for o in again] == pytest.approx([o["score"] for o in out], abs=1e-4)
    assert [o["itc"] for o in again] == pytest.approx([o["itc"] for o in out], abs=1e-4)
    assert len({round(o["score"], 6) for o in out}) > 1
    # exact: each pair alone through transformers' own heads -- P(match) of the ITM head (column 1) and the
    # ITC cosine (catches a wrong head, column or image<->text pairing)
    model = BlipForImageTextRetrieval.from_pretrained(tiny_blip_dir).eval()
    tok = BertTokenizer.from_pretrained(tiny_blip_dir)
    for image, text, got in zip(images, texts, out, strict=True):
        px = preprocess(image[None], 32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711),
                        center_crop=False)
        enc = tok([text], return_tensors="pt")
        with torch.no_grad():
            p_match = model(**enc, pixel_values=px, use_itm_head=True).itm_score.softmax(-1)[0, 1]
            cos = model(**enc, pixel_values=px, use_itm_head=False).itm_score[0, 0]
        assert got["score"] == pytest.approx(100 * p_match.item(), abs=1e-3)
        assert got["itc"] == pytest.approx(100 * cos.item(), abs=1e-3)


def test_blip2_retrieval_model_loads_and_scores(tmp_path):
    from transformers import BertTokenizer, Blip2Config, Blip2ForImageTextRetrieval

    from dptune.evaluation.metrics_blip import BLIPScorer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = Blip2Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        qformer_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=32,
            encoder_hidden_size=32,
            pad_token_id=0,
            use_qformer_text_input=True,
        ),
        num_query_tokens=4,
        image_text_hidden_size=16,
    )
    Blip2ForImageTextRetrieval(cfg).save_pretrained(tmp_path)
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    scorer = BLIPScorer.from_pretrained(tmp_path)
    assert scorer.model_type == "blip-2"
    images, texts = random_images(2), ["a red cat", "the blue dog"]
    out = scorer(images, texts)
    assert out[0] != out[1]
    model = Blip2ForImageTextRetrieval.from_pretrained(tmp_path).eval()
    tok = BertTokenizer.from_pretrained(tmp_path)
    for image, text, got in zip(images, texts, out, strict=True):  # each pair alone, transformers' own heads
        px = preprocess(image[None], 32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711),
                        center_crop=False)
        enc = tok([text], return_tensors="pt")
        with torch.no_grad():
            itm = model(**enc, pixel_values=px, use_image_text_matching_head=True).logits_per_image
            itc = model(**enc, pixel_values=px, use_image_text_matching_head=False).logits_per_image
        assert got["score"] == pytest.approx(100 * itm.softmax(-1)[0, 1].item(), abs=1e-3)
        assert got["itc"] == pytest.approx(100 * itc[0, 0].item(), abs=1e-3)


def test_blip_missing_weights_and_wrong_model(tmp_path, tiny_clip_dir):
    from dptune.evaluation.metrics_blip import BLIPScorer

    with pytest.raises(MissingWeightsError, match="blip-itm-large-coco"):
        BLIPScorer.from_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="'clip' model"):
        BLIPScorer.from_pretrained(tiny_clip_dir)
