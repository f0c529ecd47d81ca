"""DCT: the token (only its row learns), the differentiable sampler (last k steps, final-step pitfall), the
textual-inversion export and the registered generator, on the tiny random SD with a tiny random ViT."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from dptune.methods.dct.sampling import check_gradient_path, ddim_for, last_step_is_identity, sample_latents
from dptune.methods.dct.token import TokenEmbedding, add_token, load_token, save_token, token_installed
from dptune.methods.dct.train import DCTObjective, build_objective, prepare_noise
from helpers import TinyViT


def objective(backbone, grad_steps=1, decode="x0", steps=3, classifier=None) -> DCTObjective:
    cfg = SimpleNamespace(token="<dct>", initializer="a", grad_steps=grad_steps, decode=decode)
    return build_objective(backbone, classifier or TinyViT(), cfg, target=1, steps=steps, guidance=4.0)


def inputs(backbone, n=2, seed=0):
    shape = (backbone.unet.config.in_channels, backbone.latent_size, backbone.latent_size)
    return prepare_noise({"prompt": ["<dct> two red circles"] * n}, torch.Generator().manual_seed(seed), shape)


def test_token_added_from_initializer_and_tokenizer_copied(tiny_backbone):
    """The token gets a new id, its row starts as the embedding of 'a', and the caller's tokenizer is untouched."""
    before = len(tiny_backbone.tokenizer)
    tok, new_id, init_id = add_token(tiny_backbone.tokenizer, "<dct>")
    assert len(tiny_backbone.tokenizer) == before and len(tok) == before + 1 and new_id == before
    obj = objective(tiny_backbone)
    table = obj.token.base.weight
    assert torch.equal(obj.token.row.detach()[0], table[init_id])
    with pytest.raises(ValueError, match="already has"):
        add_token(tok, "<dct>")
    with pytest.raises(ValueError, match="not one known token"):
        add_token(tiny_backbone.tokenizer, "<x>", initializer="zebra")


def test_only_the_token_row_gets_a_gradient(tiny_backbone):
    """Catches a leak of the gradient into the frozen table or the networks: after backward the only tensor
    with a gradient is the token row, and it is non-zero."""
    obj = objective(tiny_backbone)
    loss, terms = obj(inputs(tiny_backbone))
    loss.backward()
    assert set(terms) >= {"ce", "accuracy", "total"}
    with_grad = [n for n, p in obj.named_parameters() if p.grad is not None]
    assert with_grad == ["frozen.2.embeddings.token_embedding.row"]
    assert obj.token.row.grad.abs().sum() > 0
    assert obj.token.base.weight.grad is None


def test_installed_token_is_restored(tiny_backbone):
    """The generator's context manager puts the original embedding module back, even after an error."""
    te = tiny_backbone.text_encoder
    original = te.get_input_embeddings()
    with pytest.raises(RuntimeError, match="boom"):
        with token_installed(te, len(tiny_backbone.tokenizer), torch.zeros(te.config.hidden_size)):
            assert isinstance(te.get_input_embeddings(), TokenEmbedding)
            raise RuntimeError("boom")
    assert te.get_input_embeddings() is original


def count_grad_calls(unet) -> list[bool]:
    calls: list[bool] = []
    unet.register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    return calls


@pytest.mark.parametrize("k", [1, 2])
def test_gradient_flows_through_the_last_k_steps_only(tiny_backbone, k):
    """All steps run (full sampling) but only the last k U-Net calls record a graph; catches a sampler that
    tracks every step (memory grows with steps) or none."""
    obj = objective(tiny_backbone, grad_steps=k, steps=4)
    calls = count_grad_calls(tiny_backbone.unet)
    loss, _ = obj(inputs(tiny_backbone))
    loss.backward()
    assert calls == [False] * (4 - k) + [True] * k
    assert obj.token.row.grad.abs().sum() > 0


def pitfall_backbone(backbone):
    """The same model with a DDIM schedule whose last timestep is 0 (steps_offset=0, set_alpha_to_one=False)."""
    from diffusers import DDIMScheduler

    bb = copy.copy(backbone)
    bb.scheduler = DDIMScheduler.from_config(backbone.scheduler.config, steps_offset=0, set_alpha_to_one=False)
    return bb


def test_final_step_pitfall_identity_step_gives_no_gradient(tiny_backbone):
    """The pitfall is real: through an identity last step alone the token gets exactly zero gradient; decoding
    the last x0 prediction (default) gets a gradient; the zero-gradient setting is refused with a clear error."""
    bb = pitfall_backbone(tiny_backbone)
    sched = ddim_for(bb, 3)
    assert last_step_is_identity(sched) and int(sched.timesteps[-1]) == 0
    assert not last_step_is_identity(ddim_for(tiny_backbone, 3))  # steps_offset=1: the last step moves
    obj = objective(bb, steps=3)  # decode="x0"
    grads = {}
    for decode in ("sample", "x0"):
        obj.token.row.grad = None
        cond = bb.encode_text(["<dct> two red circles"]).hidden
        lat = sample_latents(bb, obj.scheduler, cond, obj.uncond, inputs(bb, 1)["noise"], 4.0, 1, decode)
        lat.pow(2).sum().backward()
        grads[decode] = obj.token.row.grad.abs().sum().item()
    assert grads["sample"] == 0.0 and grads["x0"] > 0
    with pytest.raises(ValueError, match="identity"):
        check_gradient_path(obj.scheduler, 1, "sample")
    check_gradient_path(obj.scheduler, 2, "sample")  # earlier steps still carry a gradient


def test_export_loads_in_plain_diffusers_pipeline(tiny_parts, tmp_path):
    """The token folder is diffusers' textual-inversion format: load_textual_inversion adds the token and its
    row, and the pipeline's text embedding of a prompt equals dptune's (installed-token) embedding."""
    from diffusers import StableDiffusionPipeline

    from dptune.backbone import SDBackbone

    bb = SDBackbone(**copy.deepcopy(tiny_parts))
    row = torch.randn(bb.text_encoder.config.hidden_size)
    save_token(tmp_path / "tokens", "<dct>", row, {"label": "square"})
    token, loaded, meta = load_token(tmp_path / "tokens")
    assert token == "<dct>" and torch.equal(loaded, row) and meta["label"] == "square"
    pipe = StableDiffusionPipeline(**tiny_parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.load_textual_inversion(str(tmp_path / "tokens"))
    tid = pipe.tokenizer.convert_tokens_to_ids("<dct>")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[tid], row)
    prompt = "<dct> two red circles"
    ids = pipe.tokenizer([prompt], padding="max_length", max_length=16, return_tensors="pt").input_ids
    theirs = pipe.text_encoder(ids).last_hidden_state
    tok, new_id, _ = add_token(bb.tokenizer, "<dct>")
    bb.tokenizer = tok
    with token_installed(bb.text_encoder, new_id, row):
        ours = bb.encode_text([prompt]).hidden
    torch.testing.assert_close(ours, theirs)


def test_with_token_places_the_token_before_the_class_words():
    from dptune.methods.dct.generator import with_token

    assert with_token("three red circles", "<t>", "three", "class") == "<t> three red circles"
    assert with_token("two red circles", "<t>", "three", "class") == "two red circles"  # not the class: unchanged
    assert with_token("two red circles", "<t>", "three", "all") == "<t> two red circles"
    assert with_token("a photo of espresso", "<t>", "espresso", "class") == "a photo of <t> espresso"
    assert with_token("three red circles", "<t>", "three", "class", "replace") == "<t> red circles"
    assert with_token("two red circles", "<t>", "three", "class", "replace") == "two red circles"
    assert with_token("<t> three red circles", "<t>", "three", "none") == "<t> three red circles"
    with pytest.raises(ValueError, match="does not hold the class token"):
        with_token("three red circles", "<t>", "three", "none")


def test_generator_changes_only_class_prompts(tmp_path):
    """Same seeds: prompts without the class words give the base model's images bit for bit; class prompts
    change; a token of the wrong width is refused with the model it was trained for."""
    from dptune.methods import GenerationContext, parse_method
    from dptune.methods.base import BaseGenerator

    ctx = GenerationContext("tiny-random", steps=2)
    dim = ctx.backbone().text_encoder.config.hidden_size
    torch.manual_seed(0)
    save_token(tmp_path / "tok", "<dct>", torch.randn(dim), {"class_words": "three", "label": "3"})
    run = parse_method("dct", {"tokens": str(tmp_path / "tok")})
    gen, base = run.method.generator(run.config, ctx), BaseGenerator(ctx)
    other, cls = ["two red circles"], ["three red circles"]
    np_equal = lambda a, b: bool((a == b).all())  # noqa: E731
    assert np_equal(gen(other, [1]), base(other, [1]))
    assert not np_equal(gen(cls, [1]), base(cls, [1]))
    assert np_equal(base(cls, [1]), BaseGenerator(ctx)(cls, [1]))  # the shared model came back unchanged
    save_token(tmp_path / "wide", "<dct>", torch.randn(dim + 1), {"model": "elsewhere"})
    with pytest.raises(ValueError, match="trained for model 'elsewhere'"):
        run.method.generator(parse_method("dct", {"tokens": str(tmp_path / "wide")}).config, ctx)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_method("dct", {"tokens": str(tmp_path / "nothing")}).check_weights()
    with pytest.raises(ValueError, match="needs tokens weights"):
        parse_method("dct").check_weights()
