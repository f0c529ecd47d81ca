"""``shapesworld-count``: a small CNN that counts ShapesWorld objects (1-4), DCT's shipped classifier.

Counting is what the tiny ShapesWorld SD gets most wrong after relations (it merges or drops objects), so it is
the attribute a class token can teach. Trained on renders of 1-4 objects (random kinds, half of the scenes of
one kind like the count captions) with blur and pixel noise so that it also reads decoded samples:

    python -m dptune.methods.dct.counter --out models/shapesworld-count

Ships as ``model.safetensors`` + ``config.json`` (labels, architecture, held-out accuracy) + ``README.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dptune.methods.dct.resize import resize
from dptune.utils.io import load_json, load_tensors, save_json, save_tensors

LABELS = ("1", "2", "3", "4")
SIZE = 32
NAME = "shapesworld-count"


class CountNet(nn.Module):
    """Four 3x3 conv layers and a global mean pool (a mean of per-place evidence suits counting)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * w, 2 * w), nn.ReLU(), nn.Linear(2 * w, len(LABELS)))
        self.width, self.labels = width, list(LABELS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(images.float(), (SIZE, SIZE)) * 2 - 1  # (B, 3, 32, 32) in [-1, 1]
        h = self.features(x)  # (B, 2w, 8, 8)
        return self.head(h.mean(dim=(2, 3)))  # (B, 4)


def model_dir() -> Path:
    """``shapesworld-count`` in the package's assets, else the source checkout's models/ folder."""
    package = Path(__file__).resolve().parents[2]  # src/dptune
    candidates = [package / "assets" / NAME, package.parent.parent / "models" / NAME]
    return next((c for c in candidates if (c / "model.safetensors").is_file()), candidates[-1])


def load_counter(path: str | Path | None = None, device="cpu") -> CountNet:
    folder = Path(path) if path else model_dir()
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"the {NAME} classifier is missing at {folder}; rebuild it with "
                                f"`python -m dptune.methods.dct.counter --out models/{NAME}`")
    cfg = load_json(folder / "config.json")
    model = CountNet(int(cfg["width"]))
    model.load_state_dict(load_tensors(folder / "model.safetensors"))
    return model.to(device).eval()


# ---- data ---------------------------------------------------------------------------------------------
def render_counts(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` renders (n, 32, 32, 3) uint8 with 1-4 objects, and their count labels (n,) as class indices."""
    from dptune.shapesworld.render import random_layout, render_scene
    from dptune.shapesworld.splits import ALL_KINDS

    rng = np.random.default_rng(seed)
    images, labels = np.empty((n, SIZE, SIZE, 3), np.uint8), np.empty(n, np.int64)
    for i in range(n):
        count = 1 + i % len(LABELS)
        one_kind = rng.random() < 0.5
        first = ALL_KINDS[rng.integers(len(ALL_KINDS))]
        kinds = [first if one_kind else ALL_KINDS[rng.integers(len(ALL_KINDS))] for _ in range(count)]
        scene, attempt = None, 0
        while scene is None:
            scene, attempt = random_layout(rng, kinds, attempt), attempt + 1
        images[i], labels[i] = render_scene(scene), count - 1
    return images, labels


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur (random sigma 0-1 px) and pixel noise on (B, 3, H, W) in [0, 1]: decoded samples are soft."""
    sigma = torch.rand(x.shape[0], generator=gen) * 1.0  # (B,)
    k = torch.arange(-2, 3, dtype=torch.float32)  # (5,)
    kern = torch.exp(-k[None] ** 2 / (2 * sigma[:, None].clamp(min=1e-3) ** 2))  # (B, 5)
    kern = kern / kern.sum(1, keepdim=True)
    b, c, h, w = x.shape
    flat = x.reshape(1, b * c, h, w)
    kx = kern.repeat_interleave(c, 0)[:, None, None, :]  # (B*C, 1, 1, 5)
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), kx, groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="replicate"), kx.transpose(-1, -2), groups=b * c)
    noise = torch.randn(x.shape, generator=gen) * 0.03
    return (flat.reshape(b, c, h, w) + noise).clamp(0, 1)


def to_unit(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 32, 32) in [0, 1]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.cat([model(x[i:i + 512]).argmax(1) for i in range(0, len(x), 512)]).eq(y).float().mean())


def train_counter(out: str | Path, n_train: int = 20_000, n_test: int = 2_000, steps: int = 2000,
                  batch: int = 64, lr: float = 2e-3, seed: int = 0) -> dict:
    """Train, measure on held-out renders (plain and augmented), save; returns the measured numbers."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xtr, ytr = render_counts(n_train, seed)
    xte, yte = render_counts(n_test, 1_000_000 + seed)  # a disjoint random stream: held-out scenes
    xtr, ytr, xte, yte = to_unit(xtr), torch.from_numpy(ytr), to_unit(xte), torch.from_numpy(yte)
    model = CountNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(0, n_train, (batch,), generator=gen)
        loss = F.cross_entropy(model(augment(xtr[idx], gen)), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    metrics = {"test_accuracy_renders": accuracy(model, xte, yte),
               "test_accuracy_augmented": accuracy(model, augment(xte, torch.Generator().manual_seed(7)), yte),
               "final_train_loss": loss.item(), "steps": steps, "n_train": n_train, "n_test": n_test,
               "wall_s": round(time.perf_counter() - t0, 1), "date": time.strftime("%Y-%m-%d", time.gmtime())}
    out = Path(out)
    save_tensors(out / "model.safetensors", model.state_dict())
    save_json(out / "config.json", {"name": NAME, "architecture": "CountNet", "width": model.width,
                                    "labels": list(LABELS), "input": "(B, 3, H, W) in [0, 1], resized to 32",
                                    "metrics": metrics})
    return metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=f"train the {NAME} classifier on ShapesWorld renders")
    p.add_argument("--out", default=f"models/{NAME}")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(train_counter(a.out, n_train=a.n_train, steps=a.steps, seed=a.seed))


if __name__ == "__main__":
    main()
