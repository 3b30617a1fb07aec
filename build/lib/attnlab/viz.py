"""Pictures shared by callbacks and scripts: tokens coloured by attention weight."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

CMAP = "Reds"


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (creating its folder) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


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
    return save_figure(fig, path, dpi=110)


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
    return save_figure(fig, path)


def plot_matrix(matrix: object, path: str | Path, title: str, xlabel: str, ylabel: str) -> Path:
    """A heatmap with a colour bar (e.g. the sinusoidal positional-encoding table)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    image = ax.imshow(matrix, aspect="auto", cmap="RdBu", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_alignments(
    rows: Sequence[tuple[object, Sequence[str], Sequence[str], str]], path: str | Path
) -> Path:
    """Cross-attention heatmaps, one per (weights (T, S), source tokens, target tokens, title):
    target tokens down the rows, source tokens along the columns (as Bahdanau et al., fig. 3)."""
    import numpy as np

    sizes = [(len(src), len(tgt)) for _, src, tgt, _ in rows]
    width = max(3.0, 1.5 + 0.22 * max(s for s, _ in sizes))
    heights = [1.2 + 0.22 * t for _, t in sizes]
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(width, sum(heights)), squeeze=False, height_ratios=heights
    )
    for ax, (weights, src, tgt, title) in zip(axes[:, 0], rows, strict=True):
        ax.imshow(np.asarray(weights, dtype=float), cmap="Greys", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(src)), [clean_token(t) for t in src], rotation=90, fontsize=7)
        ax.set_yticks(range(len(tgt)), [clean_token(t) for t in tgt], fontsize=7)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bars(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
    fmt: str = "%.1f",
) -> Path:
    """Grouped bars: one group per label, one bar per series (e.g. BLEU per length bucket), each
    bar labelled with its value in ``fmt``."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.6 * len(labels) * max(1, len(series))), 3.5))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt=fmt, fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    log_x: bool = False,
    log_y: bool = False,
) -> Path:
    """One line with markers per ``{label: (xs, ys)}`` (learning curves, a metric against a
    swept value); a legend when there are several."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
