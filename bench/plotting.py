"""Small line charts as PNG with Pillow (a project dependency), so benchmark and study scripts need no plotting
library. ``line_chart`` draws one or more series with axes, ticks, a title and a legend; ``side_by_side``
puts several such charts in one image."""
import math

from PIL import Image, ImageDraw, ImageFont

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (255, 187, 120)]


def _ticks(lo, hi, count=6):
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=10 * magnitude)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - 1e-9:  # the last tick at or above the largest value
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def line_chart(series, path, title, xlabel, ylabel, size=(900, 560), dashed=()):
    """Write a PNG line chart. ``series``: {label: (xs, ys)}; labels in ``dashed`` are drawn with dashes."""
    chart_image(series, title, xlabel, ylabel, size, dashed).save(path)
    return path


def side_by_side(panels, path, size=(760, 520)):
    """Write several charts next to each other in one PNG, on one y scale so that their heights compare.
    ``panels``: a list of dicts of ``chart_image``'s keyword arguments (series, title, xlabel, ylabel, ...)."""
    ys_all = [y for panel in panels for _, ys in panel["series"].values() for y in ys]
    y_range = (min(ys_all), max(ys_all))
    images = [chart_image(size=size, y_range=y_range, **panel) for panel in panels]
    sheet = Image.new("RGB", (size[0] * len(images), size[1]), "white")
    for i, image in enumerate(images):
        sheet.paste(image, (size[0] * i, 0))
    sheet.save(path)
    return path


def chart_image(series, title, xlabel, ylabel, size=(900, 560), dashed=(), y_range=None, colours=None):
    """The chart as a Pillow image; ``y_range`` (lo, hi) fixes the y axis, else it covers the data; ``colours``
    ({label: (r, g, b)}) overrides the palette for those labels."""
    width, height = size
    left, right, top, bottom = 70, 250, 40, 55
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys]
    y_lo, y_hi = y_range or (min(ys_all), max(ys_all))
    xticks, yticks = _ticks(min(xs_all), max(xs_all)), _ticks(y_lo, y_hi)
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]

    def to_px(x, y):
        px = left + (x - x0) / (x1 - x0 or 1) * (width - left - right)
        py = height - bottom - (y - y0) / (y1 - y0 or 1) * (height - top - bottom)
        return px, py

    for t in yticks:  # grid and labels
        _, py = to_px(x0, t)
        draw.line([(left, py), (width - right, py)], fill=(230, 230, 230))
        draw.text((left - 8, py), f"{t:g}", fill="black", font=font, anchor="rm")
    for t in xticks:
        px, _ = to_px(t, y0)
        draw.line([(px, top), (px, height - bottom)], fill=(240, 240, 240))
        draw.text((px, height - bottom + 6), f"{t:g}", fill="black", font=font, anchor="mt")
    draw.rectangle([(left, top), (width - right, height - bottom)], outline="black")
    draw.text((width / 2 - right / 2, 14), title, fill="black", font=font, anchor="mm")
    draw.text((width / 2 - right / 2, height - 18), xlabel, fill="black", font=font, anchor="mm")
    draw.text((8, top - 22), ylabel, fill="black", font=font)

    for i, (label, (xs, ys)) in enumerate(series.items()):
        colour = (colours or {}).get(label, PALETTE[i % len(PALETTE)])
        points = [to_px(x, y) for x, y in zip(xs, ys)]
        for a, b in zip(points, points[1:]):
            if label in dashed:
                for k in range(0, 10, 2):  # five dashes per segment
                    p = (a[0] + (b[0] - a[0]) * k / 10, a[1] + (b[1] - a[1]) * k / 10)
                    q = (a[0] + (b[0] - a[0]) * (k + 1) / 10, a[1] + (b[1] - a[1]) * (k + 1) / 10)
                    draw.line([p, q], fill=colour, width=2)
            else:
                draw.line([a, b], fill=colour, width=2)
        for p in points:
            draw.ellipse([(p[0] - 2, p[1] - 2), (p[0] + 2, p[1] + 2)], fill=colour)
        ly = top + 8 + 16 * i
        draw.line([(width - right + 12, ly), (width - right + 32, ly)], fill=colour, width=3)
        draw.text((width - right + 38, ly), label, fill="black", font=font, anchor="lm")
    return image
