"""Soft-token injection and the SoftREPA / AGSM losses on tiny random SD 1.5-like, SDXL-like and SD3-like
denoisers (no world, no files)."""

from __future__ import annotations

import pytest
import torch

from dptune.methods.soft_tokens.inject import (
    architecture_of,
    block_modules,
    context_dims,
    denoiser_call,
    inject_tokens,
)
from dptune.methods.soft_tokens.losses import (
    agsm_banks,
    agsm_loss,
    pair_errors,
    pair_predictions,
    softrepa_loss,
)
from dptune.methods.soft_tokens.tokens import SoftTokens

FAMILIES = ("sd15", "sdxl", "sd3")


def tiny_denoiser(family: str):
    """(model, context width, pooled width or None) of a tiny random denoiser of ``family``."""
    from diffusers import SD3Transformer2DModel, UNet2DConditionModel

    from dptune.backbone.tiny import tiny_components

    torch.manual_seed(0)
    if family == "sd15":
        return tiny_components()["unet"], 32, None
    if family == "sdxl":  # added text/time conditioning: pooled 32 + 6 ids x 8 = 80
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D",
            "UpBlock2D"), cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80, norm_num_groups=8)
        return unet.eval(), 32, 32
    model = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                                  num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32,
                                  pooled_projection_dim=16, out_channels=4)
    return model.eval(), 32, 16


def make_inputs(b: int, width: int, pooled: int | None, seed: int = 0, length: int = 6):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 4, 8, 8, generator=gen)  # (B, 4, 8, 8)
    hidden = torch.randn(b, length, width, generator=gen)  # (B, L, D)
    pool = None if pooled is None else torch.randn(b, pooled, generator=gen)  # (B, Dp)
    return z, hidden, pool


def random_tokens(model, seed: int = 1, banks: int = 1, std: float = 0.5) -> SoftTokens:
    tokens = SoftTokens(architecture_of(model), context_dims(model), num_tokens=3, banks=banks, init_std=std,
                        seed=seed)
    with torch.no_grad():  # non-zero time tokens, so the timestep matters
        for p in tokens.time.values():
            p.normal_(0, std, generator=torch.Generator().manual_seed(seed + 1))
    return tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_hooks_change_the_output_and_restore_it_bit_for_bit(family):
    """Catches: hooks that do nothing (tokens not inserted), hooks left installed after the with block, and an
    exception inside the block leaving them installed (deleting the try/finally made the last check fail)."""
    model, width, pooled = tiny_denoiser(family)
    call = denoiser_call(model)
    z, hidden, pool = make_inputs(2, width, pooled)
    t = torch.tensor([10, 600])
    tokens = random_tokens(model)
    with torch.no_grad():
        before = call(z, t, hidden, pool)
        with inject_tokens(model, tokens):
            with_tokens = call(z, t, hidden, pool)
        after = call(z, t, hidden, pool)
        with pytest.raises(RuntimeError, match="boom"), inject_tokens(model, tokens):
            raise RuntimeError("boom")
        after_error = call(z, t, hidden, pool)
    assert (with_tokens - before).abs().max() > 1e-4
    assert torch.equal(before, after) and torch.equal(before, after_error)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_time_tokens_follow_t_div_10_and_reach_both_cfg_branches(family):
    """Timesteps of one bucket (t // 10) share tokens, other buckets do not; in a CFG batch [uncond; cond] both
    halves change (the tokens are in both branches). Catches a bucket of t instead of t // 10 and tokens put
    into the conditional half only."""
    model, width, pooled = tiny_denoiser(family)
    call = denoiser_call(model)
    z, hidden, pool = make_inputs(2, width, pooled)
    tokens = random_tokens(model)
    block = tokens.blocks[0]
    assert tokens.bucket(torch.tensor([0, 9, 10, 999, 5000])).tolist() == [0, 0, 1, 99, 99]
    same = tokens.block_tokens(block, torch.tensor([30, 31, 45]))  # (3, K, D)
    assert torch.equal(same[0], same[1]) and not torch.allclose(same[0], same[2])
    cfg_hidden = torch.cat([torch.zeros_like(hidden[:1]), hidden[:1]])  # [uncond; cond] of one prompt
    with torch.no_grad():
        base = call(z, torch.tensor([30, 30]), cfg_hidden, pool)
        with inject_tokens(model, tokens):
            out = call(z, torch.tensor([30, 30]), cfg_hidden, pool)
    assert ((out - base).flatten(1).abs().amax(1) > 1e-4).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_are_named_and_unknown_ones_rejected(family):
    model, _, _ = tiny_denoiser(family)
    names = list(block_modules(model))
    assert names, "every family has blocks reading the text"
    with pytest.raises(ValueError, match="no text attention; choose from"):
        context_dims(model, ["nope"])


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_pair_errors_equal_a_per_pair_loop(family):
    """The B x B errors from one call equal B^2 single calls (catches a transposed pairing: image i must meet
    caption j at row i * B + j; swapping repeat / repeat_interleave fails this)."""
    model, width, pooled = tiny_denoiser(family)
    call = denoiser_call(model)
    b = 3
    z, hidden, pool = make_inputs(b, width, pooled)
    target = torch.randn(b, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.full((b,), 420)
    with torch.no_grad(), inject_tokens(model, random_tokens(model)):
        batched = pair_errors(pair_predictions(call, z, t, hidden, pool), target)
        loop = torch.zeros(b, b)
        for i in range(b):
            for j in range(b):
                pred = call(z[i:i + 1], t[i:i + 1], hidden[j:j + 1], None if pool is None else pool[j:j + 1])
                loop[i, j] = (pred - target[i:i + 1]).square().mean()
    assert torch.allclose(batched, loop, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(batched, batched.T, rtol=1e-3)  # the check above can tell i from j


def test_softrepa_loss_matches_its_formula():
    """logits = 4 exp(-e / 0.07), CE with the diagonal as the class, + 10 mean(e_ii) (catches a wrong sign,
    scale or temperature, or the CE taken over the wrong axis)."""
    e = torch.tensor([[0.10, 0.30], [0.05, 0.20]])
    total, terms = softrepa_loss(e)
    logits = 4 * torch.exp(-e / 0.07)
    ce = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 1]) / 2
    assert torch.allclose(total, ce + 10 * (0.10 + 0.20) / 2)
    assert terms["pair_acc"].item() == 0.5  # row 1 prefers caption 0


def test_agsm_direction_and_targets_match_the_formula():
    """D_ij = ema_ij - sum_k softmax_k(-MSE(target_i, ema_ik) / 0.1) ema_ik; matched pairs go to target + g+ D,
    mismatched to target - g- D (catches a softmax over the wrong axis or swapped signs)."""
    gen = torch.Generator().manual_seed(0)
    ema = torch.randn(2, 2, 1, 2, 2, generator=gen)
    target = torch.randn(2, 1, 2, 2, generator=gen)
    r = -((ema - target[:, None]) ** 2).flatten(2).mean(-1)
    w = torch.softmax(r / 0.1, dim=1)
    d = ema - (w[..., None, None, None] * ema).sum(1, keepdim=True)
    goal = torch.stack([torch.stack([target[0] + 0.5 * d[0, 0], target[0] - 2.0 * d[0, 1]]),
                        torch.stack([target[1] - 2.0 * d[1, 0], target[1] + 0.5 * d[1, 1]])])
    total, terms = agsm_loss(goal, ema, target, gain_pos=0.5, gain_neg=2.0)
    assert total.item() < 1e-10
    assert agsm_banks(2).tolist() == [0, 1, 1, 0]


def fixed_batch(family: str, b: int = 3):
    model, width, pooled = tiny_denoiser(family)
    model.requires_grad_(False)
    z, hidden, pool = make_inputs(b, width, pooled, seed=3)
    target = torch.randn(b, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    inputs = {"z_t": z, "t": torch.full((b,), 500), "hidden": hidden, "pooled": pool, "target": target}
    return model, inputs


def loss_after_steps(objective, inputs, steps: int, lr: float = 0.05) -> list[float]:
    opt = torch.optim.Adam(objective.tokens.parameters(), lr=lr)
    losses = []
    for _ in range(steps + 1):
        total, _ = objective(inputs)
        losses.append(total.item())
        opt.zero_grad()
        total.backward()
        opt.step()
    return losses


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_softrepa_steps_lower_its_loss(family):
    """Catches tokens that get no gradient (e.g. injected under no_grad or detached) and a loss that rises."""
    from dptune.methods.soft_tokens.objective import SoftREPAObjective

    model, inputs = fixed_batch(family)
    tokens = SoftTokens(architecture_of(model), context_dims(model), num_tokens=2, init_std=0.5)
    losses = loss_after_steps(SoftREPAObjective(model, denoiser_call(model), tokens), inputs, steps=6)
    assert losses[-1] < losses[0] - 1e-3, losses


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_agsm_steps_lower_its_loss_and_move_the_ema_once_per_step(family):
    """Both banks learn (psi+ from the matched pairs, psi- from the mismatched ones) and the EMA teacher moves
    by (1 - decay) of the change, once per optimiser step (a second forward without a step leaves it)."""
    from dptune.methods.soft_tokens.objective import AGSMObjective

    model, inputs = fixed_batch(family)
    tokens = SoftTokens(architecture_of(model), context_dims(model), num_tokens=2, banks=2, init_std=0.5)
    objective = AGSMObjective(model, denoiser_call(model), tokens, ema_decay=0.5)
    start = [p.detach().clone() for p in tokens.parameters()]
    losses = loss_after_steps(objective, inputs, steps=6, lr=0.02)
    assert losses[-1] < losses[0] - 1e-4, losses
    block = tokens.blocks[0]
    moved = (tokens.base[block].detach() - start[0]).flatten(1).abs().amax(1)  # per bank
    assert (moved > 0).all(), "both banks get gradients"
    objective(inputs)  # catches up with the last optimiser step
    ema_before = objective.ema.base[block].detach().clone()
    objective(inputs)  # no optimiser step in between: the EMA must not move
    assert torch.equal(objective.ema.base[block], ema_before)
    assert not torch.equal(ema_before, start[0])  # but it did follow the steps


def tiny_sdxl_pipeline():
    """A random tiny StableDiffusionXLPipeline (two CLIP text towers, added text/time conditioning)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from dptune.backbone.tiny import tiny_components, tiny_tokenizer

    parts = tiny_components()
    tok = tiny_tokenizer()
    text_cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=16, projection_dim=32,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # context = both towers' hidden states side by side (32 + 32)
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D",
        "UpBlock2D"), cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        norm_num_groups=8)
    pipe = StableDiffusionXLPipeline(vae=parts["vae"], text_encoder=CLIPTextModel(text_cfg).eval(),
                                     text_encoder_2=CLIPTextModelWithProjection(text_cfg).eval(), tokenizer=tok,
                                     tokenizer_2=tok, unet=unet.eval(), scheduler=parts["scheduler"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_pipeline():
    """A random tiny StableDiffusion3Pipeline: two CLIP towers, no T5 (the pipeline then pads with zeros)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from dptune.backbone.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    text_cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=16, projection_dim=32,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
                                        joint_attention_dim=64, pooled_projection_dim=64, out_channels=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=8, layers_per_block=1, shift_factor=0.0)
    pipe = StableDiffusion3Pipeline(transformer=transformer.eval(), scheduler=FlowMatchEulerDiscreteScheduler(),
                                    vae=vae.eval(), text_encoder=CLIPTextModelWithProjection(text_cfg).eval(),
                                    tokenizer=tok, text_encoder_2=CLIPTextModelWithProjection(text_cfg).eval(),
                                    tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("build", [tiny_sdxl_pipeline, tiny_sd3_pipeline], ids=["sdxl", "sd3"])
def test_diffusers_pipelines_generate_with_tokens_and_are_restored(build):
    """End to end on diffusers' SDXL and SD3 pipelines (CFG, added conditioning, joint attention): images
    change with the tokens and come back bit for bit without them."""
    pipe = build()
    model = getattr(pipe, "unet", None) or pipe.transformer

    def sample():
        return pipe("two red circles", num_inference_steps=2, guidance_scale=5.0, height=16, width=16,
                    output_type="np", generator=torch.Generator().manual_seed(0)).images

    base = sample()
    with inject_tokens(model, random_tokens(model)):
        tokens = sample()
    assert tokens.shape == base.shape and abs(tokens - base).max() > 1e-4
    assert (sample() == base).all()
