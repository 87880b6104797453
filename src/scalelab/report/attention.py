"""A grid of attention maps (layers x heads) for one text, as a PNG."""

from __future__ import annotations

from pathlib import Path

from scalelab.report import style


def plot_attention_grid(maps, path: Path, max_heads: int = 12) -> Path:
    """`attention_figure` written to `path` as a PNG; returns the path."""
    return style.save(attention_figure(maps, max_heads), path)


def attention_figure(maps, max_heads: int = 12):
    """One panel per (layer, head): rows are layers (first at the top), columns heads (the
    first `max_heads`), each a query x key heat map of `maps.weights` (an AttentionMaps;
    darker = more attention). Token labels on the first column and the last row when the
    text has at most 24 tokens. Returns the matplotlib figure."""
    weights = maps.weights
    layers, heads = weights.shape[0], min(weights.shape[1], max_heads)
    label = len(maps.tokens) <= 24
    # Panels big enough for their token labels, whatever the number of heads and layers.
    side = max(1.6, 0.16 * len(maps.tokens) if label else 1.6, 6.0 / heads)
    fig, axes = style.figure(side * heads + 1.0, side * layers + 1.2, nrows=layers, ncols=heads,
                             squeeze=False)  # fmt: skip
    tokens = [t.replace(" ", "␣") or "∅" for t in maps.tokens]  # spaces and empties visible
    for i in range(layers):
        for j in range(heads):
            ax = axes[i][j]
            ax.imshow(weights[i, j], cmap="Greys", vmin=0, vmax=1, aspect="equal")
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"layer {i}", fontsize=8)
                if label:
                    ax.set_yticks(range(len(tokens)), tokens, fontsize=6)
            if i == 0:
                ax.set_title(f"head {j}", fontsize=8)
            if i == layers - 1 and label:
                ax.set_xticks(range(len(tokens)), tokens, fontsize=6, rotation=90)
    shown = (
        f"first {heads} of {weights.shape[1]} heads" if heads < weights.shape[1] else "all heads"
    )
    fig.suptitle(f"{maps.model}: attention per layer and head ({shown}; rows: queries, "
                 "columns: keys)", fontsize=9)  # fmt: skip
    return fig
