"""The app's Gradio page: prompt, methods, self-correction strength, seeds -> images side by side."""

from __future__ import annotations

import base64
import html
import io

from dptune.app.playground import Playground, Tile

CSS = """
.dptune-grid {display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start;}
.dptune-method {border: 1px solid #ddd; border-radius: 8px; padding: 6px 8px;}
.dptune-method h4 {margin: 0 0 4px 0;}
.dptune-images {display: flex; flex-wrap: wrap; gap: 4px; max-width: 560px;}
.dptune-images figure {margin: 0; text-align: center; font-size: 12px;}
.dptune-method img {image-rendering: pixelated; image-rendering: crisp-edges;}
.dptune-error {color: #b00020; font-weight: bold;}
"""


def _data_uri(image) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def tiles_html(tiles: list[Tile]) -> str:
    """One column per method: its images (enlarged, unsmoothed), verdicts and seconds per image."""
    by_method: dict[str, list[Tile]] = {}
    for t in tiles:
        by_method.setdefault(t.method, []).append(t)
    cols = []
    for method, group in by_method.items():
        imgs = "".join(
            f'<figure><img src="{_data_uri(t.image)}" width="{t.image.shape[1]}" alt="{html.escape(method)}">'
            + (_caption(t.verdict) if t.verdict else "") + "</figure>" for t in group)
        cols.append(f'<div class="dptune-method" data-method="{html.escape(method)}"><h4>{html.escape(method)}'
                    f'</h4><div class="dptune-images">{imgs}</div><small>{group[0].seconds:.2f} s / image</small>'
                    "</div>")
    return '<div class="dptune-grid">' + "".join(cols) + "</div>"


def _caption(verdict: str) -> str:
    """'correct' / 'wrong' under the image; the judge's reason on hover."""
    head, _, reason = verdict.partition(" (")
    mark = {"correct": "&#10003; correct", "wrong": "&#10007; wrong"}.get(head, html.escape(head))
    return f'<figcaption title="{html.escape(reason.rstrip(")"))}">{mark}</figcaption>'


def error_html(message: str) -> str:
    return f'<div class="dptune-error">{html.escape(message)}</div>'


def build_page(play: Playground, title: str = "dptune", images: int = 4):
    """A ``gr.Blocks`` page over ``play`` (launch it with ``css=CSS``)."""
    import gradio as gr

    def run(prompt: str, labels: list[str], eta: float, seed: float, n: float) -> str:
        try:
            if not labels:
                raise ValueError("pick at least one method")
            seeds = list(range(int(seed), int(seed) + max(1, int(n))))
            return tiles_html(play.generate(prompt, labels, seeds, eta))
        except (ValueError, FileNotFoundError) as e:  # bad input: a message on the page, never a traceback
            return error_html(str(e))

    with gr.Blocks(title=title) as page:
        gr.Markdown(f"## dptune: one prompt, every method\nModel: `{play.ctx.model}`. The same seeds for every "
                    "method; on ShapesWorld each image carries the exact judge's verdict.")
        with gr.Row():
            prompt = gr.Textbox(label="prompt", placeholder="two red circles left of a blue square",
                                elem_id="prompt", scale=4)
            button = gr.Button("generate", variant="primary", elem_id="generate", scale=1)
        labels = gr.CheckboxGroup(play.choices, value=play.default_choices, label="methods", elem_id="methods")
        with gr.Row():
            eta = gr.Slider(0.0, 2.0, value=0.5, step=0.05, label="self-correction strength eta (dpt+sc)")
            seed = gr.Number(value=0, precision=0, label="first seed")
            n = gr.Slider(1, 8, value=images, step=1, label="images per method")
        out = gr.HTML(elem_id="results")
        button.click(run, [prompt, labels, eta, seed, n], out)
        prompt.submit(run, [prompt, labels, eta, seed, n], out)
    return page
