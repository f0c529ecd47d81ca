"""Referees behind one interface: tiny random CLIP and BLIP-2 folders, the DPT adapter, ensembles, errors."""

from __future__ import annotations

import json

import pytest
import torch

from dptune.methods.referee.referees import Ensemble, Referee, load_referee

WORDS = ["a", "red", "blue", "green", "circle", "square", "two", "left", "of"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random transformers CLIP folder (model + word-level CLIP tokenizer)."""
    from transformers import CLIPConfig, CLIPModel

    from dptune.backbone.tokenizers import build_clip_tokenizer

    tok = build_clip_tokenizer(WORDS, max_length=16)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("clip")
    CLIPModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory):
    """A tiny random Blip2ForImageTextRetrieval folder with a small BERT tokenizer."""
    from transformers import BertTokenizerFast, Blip2Config, Blip2ForImageTextRetrieval

    out = tmp_path_factory.mktemp("blip2")
    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(vocab))
    cfg = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        qformer_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=37, encoder_hidden_size=32, max_position_embeddings=64,
                            use_qformer_text_input=True),
        num_query_tokens=4, image_text_hidden_size=16)
    torch.manual_seed(0)
    Blip2ForImageTextRetrieval(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _images(b: int = 2, grad: bool = False) -> torch.Tensor:
    return torch.rand(b, 3, 24, 24, generator=torch.Generator().manual_seed(0)).requires_grad_(grad)


@pytest.mark.parametrize("which", ["clip", "blip2"])
def test_hf_referees_score_and_differentiate(which, clip_dir, blip2_dir):
    """A folder's kind is detected from config.json; the score is (B,) and its gradient reaches the pixels
    (catches a detached preprocessing or a no_grad image path)."""
    folder = clip_dir if which == "clip" else blip2_dir
    ref = load_referee(str(folder))
    assert ref.name == which and ref.log_odds == (which == "blip2")
    images = _images(grad=True)
    logits = ref.score(images, ["two red circle", "a blue square"])
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    ref.loss(images, ["two red circle", "a blue square"]).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_blip2_logit_is_match_minus_no_match(blip2_dir):
    """The BLIP-2 logit is l_match - l_no_match of the ITM head, so sigmoid(logit) = softmax(...)[match]."""
    ref = load_referee(f"blip2:{blip2_dir}")
    images, texts = _images(), ["two red circle", "a blue square"]
    enc = ref.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = ref.model(pixel_values=ref.pixels(images), input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                        use_image_text_matching_head=True).logits_per_image
        p_match = out.softmax(-1)[:, 1]
        assert torch.allclose(torch.sigmoid(ref.score(images, texts)), p_match, atol=1e-5)


class _Const(Referee):
    def __init__(self, value: float, log_odds: bool) -> None:
        self.value, self.log_odds, self.name = value, log_odds, f"c{value}"

    def _score(self, images, texts):
        return torch.full((images.shape[0],), self.value)


def test_ensemble_normalises_weights_and_mixes_losses():
    """Weights 3 and 1 become 0.75 / 0.25; the score is the weighted mean of the members' logits and the loss
    the weighted mean of each member's own loss (softplus(-l) for log-odds, -l otherwise)."""
    a, b = _Const(2.0, log_odds=True), _Const(-1.0, log_odds=False)
    ens = Ensemble([a, b], [3.0, 1.0])
    images, texts = _images(), ["a", "b"]
    assert torch.allclose(ens.score(images, texts), torch.tensor([1.25, 1.25]))
    expected = 0.75 * torch.nn.functional.softplus(torch.tensor(-2.0)) + 0.25 * 1.0
    assert torch.allclose(ens.loss(images, texts), expected.expand(2))
    assert not ens.log_odds
    with pytest.raises(ValueError, match="weights must be >= 0"):
        Ensemble([a, b], [1.0, -1.0])


def test_ensemble_spec_loads_members_with_weights(clip_dir, blip2_dir):
    ens = load_referee(f"clip:{clip_dir}*1+{blip2_dir}*3")
    assert isinstance(ens, Ensemble) and [m.name for m in ens.members] == ["clip", "blip2"]
    assert ens.weights == [0.25, 0.75]
    assert ens.score(_images(), ["a red circle", "two blue square"]).shape == (2,)


def test_batch_size_mismatch_is_one_clear_error(clip_dir):
    ref = load_referee(str(clip_dir))
    with pytest.raises(ValueError, match="2 images but 3 texts"):
        ref.score(_images(2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="single string"):
        ref.score(_images(2), "a red circle")


def test_unsupported_folder_and_offline_hub_id(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a supported model .*'bert'"):
        load_referee(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_referee(str(tmp_path / "missing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        load_referee("clip:dptune-tests/no-such-clip-model")


def test_dpt_adapter_referee_on_tiny_sd(tiny_probe):
    """The DPT adapter as a referee: encode -> noise at t -> matching score; deterministic (fixed noise) and
    differentiable w.r.t. the image."""
    from dptune.methods.referee.dpt_referee import DPTReferee

    ref = DPTReferee(tiny_probe, t=100)
    images = _images(2, grad=True)
    first = ref.score(images, ["a red circle", "two blue squares"])
    assert first.shape == (2,) and torch.allclose(first, ref.score(images, ["a red circle", "two blue squares"]))
    ref.loss(images, ["a red circle", "two blue squares"]).sum().backward()
    assert images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="timestep"):
        DPTReferee(tiny_probe, t=5000)


def test_clip_referee_loss_falls_on_tiny_sd(clip_dir, tiny_backbone):
    """Inverting a tiny random CLIP through the tiny SD's decoder lowers its loss (-logit) on a fixed prompt
    (the transformers code path end to end: preprocessing, features, gradient to the latent)."""
    from dptune.methods.referee.inversion import InversionConfig, Inverter

    tiny_backbone.freeze()
    ref = load_referee(str(clip_dir))
    quiet = dict(views=1, keep=1, degrees=0, translate=0, perspective=0, jitter=0, erase_min=0, erase_max=0,
                 pixel_noise=0, latent_noise=0, ema_decay=0, sds_weight=0, sds_weight_final=0, lr_warmup=0)
    inv = Inverter(tiny_backbone, ref, InversionConfig(iterations=10, lr=1.0, min_lr=1.0, ref_rms=0.2, **quiet))
    side = tiny_backbone.latent_size
    z0 = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        start = float(ref.loss(inv.decode(z0), ["two red circle"]))
    with torch.enable_grad():
        images, _ = inv(["two red circle"], [5])
    assert float(ref.loss(images, ["two red circle"])) < start
