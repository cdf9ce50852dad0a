"""Pixel-level tests of the image views: known maps must land as known colours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from whybox.attr import visualization as viz

N = 6
POS = (1, 1)  # inside the positive block (rows/cols 0..2)
NEG = (4, 4)  # inside the negative block (rows/cols 3..5)
ZERO = (1, 4)  # top-right: attribution 0
ZERO2 = (4, 1)
IMG_RGB = (200, 100, 50)


def known_map() -> np.ndarray:
    a = np.zeros((N, N))
    a[:3, :3] = 1.0
    a[3:, 3:] = -1.0
    return a


def flat_image(rgb=IMG_RGB) -> np.ndarray:
    img = np.zeros((N, N, 3), dtype=np.float64)
    img[:] = np.asarray(rgb) / 255.0
    return img


def render(fig, ax, cells):
    """RGB of the rendered pixel at the centre of each data cell (row, col)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    buf = np.asarray(canvas.buffer_rgba())
    height = buf.shape[0]
    out = {}
    for r, c in cells:
        x, y = ax.transData.transform((c, r))
        out[(r, c)] = buf[int(round(height - y)), int(round(x)), :3].astype(int)
    return out


def draw(attr, image=None, **kw):
    kw.setdefault("use_pyplot", False)
    kw.setdefault("fig_size", (3, 3))
    fig, ax = viz.visualize_image_attr(attr, image, **kw)
    return fig, ax, render(fig, ax, [POS, NEG, ZERO, ZERO2])


def cmap_rgb(name, v):
    return (np.asarray(matplotlib.colormaps[name](v)[:3]) * 255).round().astype(int)


def close(px, rgb, tol=4):
    return np.all(np.abs(np.asarray(px) - np.asarray(rgb)) <= tol)


# Expected colours per sign for heat_map: (positive cell, negative cell, zero cell).
WHITE = np.array([255, 255, 255])
HEAT_EXPECT = {
    "all": ((0, 128, 0), (255, 0, 0), WHITE),
    "positive": (cmap_rgb("Greens", 1.0), cmap_rgb("Greens", 0.0), cmap_rgb("Greens", 0.0)),
    "negative": (cmap_rgb("Reds", 0.0), cmap_rgb("Reds", 1.0), cmap_rgb("Reds", 0.0)),
    "absolute_value": (cmap_rgb("Blues", 1.0), cmap_rgb("Blues", 1.0), cmap_rgb("Blues", 0.0)),
}


@pytest.mark.parametrize("sign", list(HEAT_EXPECT))
def test_heat_map_colours_per_sign(sign):
    _, _, px = draw(known_map(), method="heat_map", sign=sign)
    pos, neg, zero = HEAT_EXPECT[sign]
    assert close(px[POS], pos), (sign, px[POS], pos)
    assert close(px[NEG], neg), (sign, px[NEG], neg)
    assert close(px[ZERO], zero) and close(px[ZERO2], zero)


def test_heat_map_all_semantics():
    # Independent of exact colormap values: green where positive, red where negative.
    _, _, px = draw(known_map(), method="heat_map", sign="all")
    r, g, b = px[POS]
    assert g > 100 and r < 30 and b < 30
    r, g, b = px[NEG]
    assert r > 200 and g < 30 and b < 30


@pytest.mark.parametrize("sign", list(HEAT_EXPECT))
def test_blended_heat_map_is_alpha_mix_over_grey(sign):
    grey = flat_image((128, 128, 128))
    _, _, px = draw(known_map(), grey, method="blended_heat_map", sign=sign, alpha_overlay=0.5)
    pos, neg, zero = HEAT_EXPECT[sign]
    for cell, heat in ((POS, pos), (NEG, neg), (ZERO, zero)):
        expected = 0.5 * np.asarray(heat) + 0.5 * 128
        assert close(px[cell], expected, tol=5), (sign, cell, px[cell], expected)


def test_blended_alpha_overlay_changes_mix():
    grey = flat_image((128, 128, 128))
    _, _, px = draw(known_map(), grey, method="blended_heat_map", sign="all", alpha_overlay=1.0)
    assert close(px[POS], (0, 128, 0))
    _, _, px = draw(known_map(), grey, method="blended_heat_map", sign="all", alpha_overlay=0.0)
    assert close(px[POS], (128, 128, 128))


def test_original_image_shows_image_and_accepts_none_attr():
    img = np.zeros((N, N, 3))
    img[:, :3] = (1.0, 0.0, 0.0)
    img[:, 3:] = (0.0, 0.0, 1.0)
    # The seed 001 call: Captum 0.9 crashes on attr=None.
    _, _, px = draw(None, img, method="original_image", title="Original Image")
    assert close(px[POS], (255, 0, 0)) and close(px[NEG], (0, 0, 255))


def test_original_image_0_255_ints_and_grayscale():
    img = np.full((N, N, 3), 60, dtype=np.uint8)
    _, _, px = draw(None, img, method="original_image")
    assert close(px[POS], (60, 60, 60))
    _, _, px = draw(None, np.full((N, N), 0.5), method="original_image")
    assert close(px[POS], (128, 128, 128))


@pytest.mark.parametrize(
    "sign,shown",
    [("positive", {POS}), ("negative", {NEG}), ("absolute_value", {POS, NEG})],
)
def test_masked_image(sign, shown):
    _, _, px = draw(known_map(), flat_image(), method="masked_image", sign=sign)
    for cell in (POS, NEG, ZERO):
        expected = IMG_RGB if cell in shown else (0, 0, 0)
        assert close(px[cell], expected), (sign, cell, px[cell])


@pytest.mark.parametrize(
    "sign,shown",
    [("positive", {POS}), ("negative", {NEG}), ("absolute_value", {POS, NEG})],
)
def test_alpha_scaling(sign, shown):
    _, _, px = draw(known_map(), flat_image(), method="alpha_scaling", sign=sign)
    for cell in (POS, NEG, ZERO):
        expected = IMG_RGB if cell in shown else (255, 255, 255)  # transparent over white
        assert close(px[cell], expected), (sign, cell, px[cell])


def test_half_values_scale_linearly():
    a = known_map()
    a[0, 0] = 0.5  # below the max: half-strength colour
    fig, ax = viz.visualize_image_attr(
        a, sign="positive", outlier_perc=0, use_pyplot=False, fig_size=(3, 3)
    )
    px = render(fig, ax, [(0, 0)])
    assert close(px[(0, 0)], cmap_rgb("Greens", 0.5))


def test_outlier_perc_saturates_top_values():
    a = np.ones((N, N))
    a[0, 0] = 100.0  # a single outlier carrying most of the mass
    # The outlier is 100/135 = 74% of the mass: dropping 80% clips it and the ordinary
    # pixels reach full colour; dropping 2% keeps it as the scale (ordinary = 0.01).
    fig, ax = viz.visualize_image_attr(
        a, sign="positive", outlier_perc=80, use_pyplot=False, fig_size=(3, 3)
    )
    assert close(render(fig, ax, [(3, 3)])[(3, 3)], cmap_rgb("Greens", 1.0))
    fig, ax = viz.visualize_image_attr(a, sign="positive", use_pyplot=False, fig_size=(3, 3))
    assert close(render(fig, ax, [(3, 3)])[(3, 3)], cmap_rgb("Greens", 0.01))


def test_all_zero_map_renders_blank_instead_of_assertion():
    _, _, px = draw(np.zeros((N, N)), method="heat_map", sign="all")
    assert all(close(v, WHITE) for v in px.values())


def test_custom_cmap_is_used():
    _, _, px = draw(known_map(), method="heat_map", sign="positive", cmap="gray")
    assert close(px[POS], (255, 255, 255)) and close(px[ZERO], (0, 0, 0))


LAYOUTS = {
    "hwc_numpy": lambda a: np.repeat(a[:, :, None] / 3, 3, axis=2),
    "hw_numpy": lambda a: a,
    "chw_tensor": lambda a: torch.tensor(a / 3).repeat(3, 1, 1).float(),
    "bchw_tensor_grad": lambda a: torch.tensor(a / 3).repeat(1, 3, 1, 1).requires_grad_(),
    "1hw_tensor": lambda a: torch.tensor(a)[None],
    "bhwc_numpy": lambda a: np.repeat(a[None, :, :, None] / 3, 3, axis=3),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_render_identically(layout):
    img_hwc = flat_image()
    img_chw = torch.tensor(img_hwc).permute(2, 0, 1)[None]  # (1, 3, H, W) tensor image
    _, _, ref = draw(known_map(), img_hwc, method="blended_heat_map", sign="all")
    _, _, got = draw(LAYOUTS[layout](known_map()), img_chw, method="blended_heat_map", sign="all")
    for cell in ref:
        assert close(got[cell], ref[cell], tol=1), (layout, cell)


def test_plt_fig_axis_is_reused():
    fig = Figure(figsize=(4, 2))
    axes = fig.subplots(1, 2)
    out_fig, out_ax = viz.visualize_image_attr(
        known_map(), plt_fig_axis=(fig, axes[1]), use_pyplot=False
    )
    assert out_fig is fig and out_ax is axes[1]
    assert len(axes[1].images) == 1 and len(axes[0].images) == 0


def test_use_pyplot_true_headless_does_not_block():
    import matplotlib.pyplot as plt

    fig, ax = viz.visualize_image_attr(known_map(), sign="all", show_colorbar=True, title="t")
    try:
        assert plt.fignum_exists(fig.number)
        assert ax.get_title() == "t"
        assert len(fig.axes) == 2  # image + colorbar
    finally:
        plt.close(fig)


def test_use_pyplot_false_makes_unmanaged_figure():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig, _ = viz.visualize_image_attr(known_map(), use_pyplot=False)
    assert isinstance(fig, Figure) and plt.get_fignums() == before


def test_colorbar_slot_hidden_for_non_heatmap():
    fig, _ = viz.visualize_image_attr(
        None, flat_image(), method="original_image", show_colorbar=True, use_pyplot=False
    )
    assert len(fig.axes) == 2 and not fig.axes[1].axison


def test_multiple_panels():
    fig, axes = viz.visualize_image_attr_multiple(
        known_map(),
        flat_image(),
        ["original_image", "heat_map", "heat_map", "masked_image"],
        ["all", "positive", "negative", "positive"],
        titles=["Original", "Pos", "Neg", "Masked"],
        show_colorbar=True,
        fig_size=(12, 3),
        use_pyplot=False,
    )
    assert isinstance(axes, list) and len(axes) == 4
    assert [a.get_title() for a in axes] == ["Original", "Pos", "Neg", "Masked"]
    px = render(fig, axes[1], [POS, NEG])
    assert close(px[POS], cmap_rgb("Greens", 1.0))
    px = render(fig, axes[2], [POS, NEG])
    assert close(px[NEG], cmap_rgb("Reds", 1.0))
    fig1, ax1 = viz.visualize_image_attr_multiple(
        known_map(), None, ["heat_map"], ["all"], use_pyplot=False
    )
    assert not isinstance(ax1, list) and len(ax1.images) == 1


@pytest.mark.parametrize(
    "kwargs,exc,fragment",
    [
        (
            {"method": "foo"},
            ValueError,
            "The 'method' parameter of visualize_image_attr must be one of ['heat_map', "
            "'blended_heat_map', 'original_image', 'masked_image', 'alpha_scaling']. Got 'foo'.",
        ),
        ({"sign": "both"}, ValueError, "The 'sign' parameter of visualize_image_attr"),
        ({"method": "masked_image", "sign": "all"}, ValueError, "cannot be 'all'"),
        ({"method": "blended_heat_map", "no_image": True}, ValueError, "'original_image'"),
        ({"attr": np.zeros((2, 3, N, N))}, ValueError, "batch dimension of 2"),
        ({"attr": np.zeros((N,))}, ValueError, "must have shape (H, W)"),
        ({"attr": "abc"}, TypeError, "The 'attr' parameter of visualize_image_attr"),
        ({"attr": np.zeros((N + 1, N))}, ValueError, "same height and width"),
        ({"attr": None}, ValueError, "may be None only"),
        ({"outlier_perc": 150}, ValueError, "'outlier_perc'"),
    ],
)
def test_bad_input_errors_name_the_parameter(kwargs, exc, fragment):
    kwargs = dict(kwargs)
    attr = kwargs.pop("attr", known_map())
    image = None if kwargs.pop("no_image", False) else flat_image()
    with pytest.raises(exc) as info:
        viz.visualize_image_attr(attr, image, use_pyplot=False, **kwargs)
    assert fragment in str(info.value)


def test_multiple_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        viz.visualize_image_attr_multiple(known_map(), None, ["heat_map"], ["all", "positive"])
    with pytest.raises(ValueError, match="one title per method"):
        viz.visualize_image_attr_multiple(
            known_map(), None, ["heat_map"], ["all"], titles=["a", "b"], use_pyplot=False
        )


def test_enums_match_captum_names():
    assert [m.name for m in viz.ImageVisualizationMethod] == [
        "heat_map",
        "blended_heat_map",
        "original_image",
        "masked_image",
        "alpha_scaling",
    ]
    assert {s.name for s in viz.VisualizeSign} == {"positive", "absolute_value", "negative", "all"}
    _, _, px = draw(known_map(), method=viz.ImageVisualizationMethod.heat_map, sign="all")
    assert close(px[POS], (0, 128, 0))


def test_draw_mask_border_and_legend():
    fig = Figure(figsize=(3, 3))
    ax = fig.subplots()
    ax.imshow(np.ones((N, N, 3)))
    mask = np.zeros((N, N), dtype=bool)
    mask[1:5, 1:5] = True
    viz.draw_mask_border(ax, mask, border_width=1, border_color="red")
    viz.draw_mask_legend(ax, mask, "cat")
    px = render(fig, ax, [(1, 1), (2, 2), (0, 0)])
    assert close(px[(1, 1)], (255, 0, 0))  # border pixel
    assert close(px[(0, 0)], (255, 255, 255))  # outside the mask: untouched
    assert ax.texts[0].get_text() == "cat"
    assert ax.texts[0].get_position() == pytest.approx((2.5, 2.5))
    n_images = len(ax.images)
    viz.draw_mask_border(ax, np.zeros((N, N), dtype=bool))
    assert len(ax.images) == n_images


@pytest.mark.parametrize(
    "method,sign",
    [
        ("heat_map", "all"),
        ("heat_map", "positive"),
        ("heat_map", "negative"),
        ("heat_map", "absolute_value"),
        ("masked_image", "positive"),
        ("alpha_scaling", "absolute_value"),
    ],
)
def test_pixels_match_captum_on_ordinary_input(method, sign):
    from captum.attr import visualization as captum_viz

    rng = np.random.default_rng(0)
    attr = rng.normal(size=(N, N, 3))
    img = rng.uniform(size=(N, N, 3))
    cells = [(r, c) for r in range(N) for c in range(N)]
    fig, ax = viz.visualize_image_attr(
        attr, img, method=method, sign=sign, use_pyplot=False, fig_size=(3, 3)
    )
    ours = render(fig, ax, cells)
    fig, ax = captum_viz.visualize_image_attr(
        attr, img, method=method, sign=sign, use_pyplot=False, fig_size=(3, 3)
    )
    theirs = render(fig, ax, cells)
    for cell in cells:
        assert close(ours[cell], theirs[cell], tol=2), (cell, ours[cell], theirs[cell])


def test_normalised_image_with_negatives_is_rescaled():
    # ImageNet-normalised inputs (seed 001) have negative values: min -> black, max -> white.
    img = np.zeros((N, N, 3))
    img[:, :3] = -2.1
    img[:, 3:] = 2.6
    _, _, px = draw(None, torch.tensor(img).permute(2, 0, 1), method="original_image")
    assert close(px[POS], (0, 0, 0)) and close(px[NEG], (255, 255, 255))


def test_non_finite_attributions_warn_and_show_as_zero():
    a = known_map()
    a[0, 5] = np.nan
    with pytest.warns(RuntimeWarning, match="non-finite"):
        _, _, px = draw(a, method="heat_map", sign="all")
    assert close(px[POS], (0, 128, 0))
