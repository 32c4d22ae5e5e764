"""Line charts for the benchmark and study reports, drawn with matplotlib (the optional ``bench`` extra:
``pip install -e ".[bench]"``). Without matplotlib a report still writes its JSON and tables; the plot is skipped
with a note. ``line_chart`` draws one chart; ``side_by_side`` several panels on one y scale."""
import sys

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (255, 187, 120)]
DPI = 100


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        print('note: no plot written: it needs matplotlib (pip install -e ".[bench]")', file=sys.stderr)
        return None
    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, series, title, xlabel, ylabel, dashed=(), colours=None):
    for i, (label, (xs, ys)) in enumerate(series.items()):
        rgb = (colours or {}).get(label, PALETTE[i % len(PALETTE)])
        ax.plot(xs, ys, label=label, color=tuple(c / 255 for c in rgb), linestyle="--" if label in dashed else "-",
                marker="o" if len(xs) <= 12 else None, markersize=3, linewidth=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def line_chart(series, path, title, xlabel, ylabel, size=(900, 560), dashed=(), colours=None):
    """Write a PNG line chart. ``series``: {label: (xs, ys)}; labels in ``dashed`` are drawn with dashes;
    ``colours`` ({label: (r, g, b)}) overrides the palette. Returns ``path``, or None without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    _draw(ax, series, title, xlabel, ylabel, dashed, colours)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def side_by_side(panels, path, size=(760, 520)):
    """Write several charts next to each other in one PNG, on one y scale so that their heights compare.
    ``panels``: a list of dicts with ``series``, ``title``, ``xlabel``, ``ylabel`` and optionally ``dashed`` and
    ``colours``. Returns ``path``, or None without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels) / DPI, size[1] / DPI), dpi=DPI,
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw(ax, panel["series"], panel["title"], panel["xlabel"], panel["ylabel"], panel.get("dashed", ()),
              panel.get("colours"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
