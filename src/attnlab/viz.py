"""Pictures shared by callbacks and scripts: tokens coloured by attention weight."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

CMAP = "Reds"


def clean_token(token: str) -> str:
    """WordPiece continuation pieces ('##ing') shown as they attach to the previous piece."""
    return token[2:] if token.startswith("##") else token


def tokens_html(tokens: Sequence[str], weights: Sequence[float]) -> str:
    """Tokens as HTML spans whose background darkens with their weight (max weight = darkest)."""
    top = max(max(weights), 1e-9)
    cmap = plt.get_cmap(CMAP)
    spans = []
    for token, weight in zip(tokens, weights, strict=True):
        r, g, b, _ = cmap(weight / top * 0.85)
        color = "#fff" if weight / top > 0.6 else "#000"
        spans.append(
            f'<span title="{weight:.3f}" style="background:rgb({r * 255:.0f},{g * 255:.0f},'
            f'{b * 255:.0f});color:{color};padding:1px 2px;margin:1px;border-radius:2px">'
            f"{html.escape(clean_token(token))}</span>"
        )
    return "<div style='font-family:monospace;line-height:1.8'>" + "".join(spans) + "</div>"


def plot_token_weights(
    rows: Sequence[tuple[Sequence[str], Sequence[float], str]],
    path: str | Path,
    line_chars: int = 90,
) -> Path:
    """One block per (tokens, weights, title): tokens wrapped into lines and shaded by weight."""
    cmap = plt.get_cmap(CMAP)
    layout, line_count = [], 0
    for tokens, weights, title in rows:
        lines, line, width = [], [], 0
        for token, weight in zip(tokens, weights, strict=True):
            text = clean_token(token)
            if line and width + len(text) + 1 > line_chars:
                lines.append(line)
                line, width = [], 0
            line.append((text, weight, width))
            width += len(text) + 1
        lines.append(line)
        top = max(max(weights, default=0.0), 1e-9)
        layout.append((title, lines, top))
        line_count += len(lines) + 1.6
    fig = plt.figure(figsize=(line_chars * 0.11, 0.32 * line_count + 0.3))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, line_chars)
    ax.set_ylim(line_count, 0)
    ax.axis("off")
    y = 0.8
    for title, lines, top in layout:
        ax.text(0.5, y, title, fontsize=9, fontweight="bold", va="center")
        y += 1.0
        for line in lines:
            for text, weight, x in line:
                shade = weight / top
                ax.text(
                    x + 0.5,
                    y,
                    text,
                    fontsize=9,
                    family="monospace",
                    va="center",
                    color="white" if shade > 0.6 else "black",
                    bbox={"facecolor": cmap(shade * 0.85), "edgecolor": "none", "pad": 1.5},
                )
            y += 1.0
        y += 0.6
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_attention_grid(
    weights: Sequence[Sequence[Sequence[Sequence[float]]]] | object,
    tokens: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """A layer x head grid of attention heatmaps (rows: queries, columns: keys) for one input."""
    import numpy as np

    maps = np.asarray(weights, dtype=float)  # (layers, heads, T, T)
    layers, heads = maps.shape[:2]
    labels = [clean_token(t) for t in tokens]
    size = 1.2 + 0.16 * len(labels)
    fig, axes = plt.subplots(layers, heads, figsize=(size * heads, size * layers), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0)
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_matrix(matrix: object, path: str | Path, title: str, xlabel: str, ylabel: str) -> Path:
    """A heatmap with a colour bar (e.g. the sinusoidal positional-encoding table)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    image = ax.imshow(matrix, aspect="auto", cmap="RdBu", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
