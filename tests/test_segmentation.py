"""Cell-part segmentation: metrics, U-Net, pairs, train / CV / predict / evaluate, bad input."""

import json

import numpy as np
import pytest
import torch

from hemascope.cli import main
from hemascope.errors import DatasetError, ImageReadError
from hemascope.io.image import write_image
from hemascope.segment.data import MaskPair, find_mask_pairs, load_pair
from hemascope.segment.metrics import pixel_confusion, segmentation_report
from hemascope.segment.unet import UNet
from hemascope.synthetic import make_cell

PARTS = ["background", "nucleus", "cytoplasm", "vacuole", "platelet", "RBC"]


def _cellavision(mask):
    """Part indices -> CellaVision grey values (255 nucleus, 128 cytoplasm, 0 other)."""
    out = np.zeros(mask.shape, np.uint8)
    out[mask == 1], out[mask == 2] = 255, 128
    return out


@pytest.fixture(scope="module")
def cells_with_masks(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv_masks")
    for i, kind in enumerate(["neutrophil", "lymphocyte", "monocyte", "eosinophil"] * 3):
        c = make_cell(kind, seed=i, size=64)
        write_image(root / f"{i:03d}.bmp", c.image)
        write_image(root / f"{i:03d}.png", _cellavision(c.mask))
    return root


def test_report_perfect_partial_and_errors():
    t = np.array([[0, 1], [2, 2]])
    rep = segmentation_report([t], [t], PARTS)
    assert rep.miou == 1.0 and set(rep.per_class) == {"background", "nucleus", "cytoplasm"}
    p = np.array([[0, 1], [2, 1]])  # one cytoplasm pixel called nucleus
    rep = segmentation_report([t], [p], PARTS)
    assert rep.per_class["nucleus"]["iou"] == pytest.approx(0.5)
    assert rep.per_class["cytoplasm"]["iou"] == pytest.approx(0.5)
    assert rep.per_class["cytoplasm"]["f1"] == pytest.approx(2 / 3)
    d = rep.to_dict()
    assert {"per_class", "miou"} <= set(d) and d["miou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    with pytest.raises(ValueError, match="shape"):
        pixel_confusion(t, t[:1], 6)
    with pytest.raises(ValueError, match="0..5"):
        pixel_confusion(t, t + 6, 6)


def test_unet_shapes_and_bad_sides():
    m = UNet(6, width=4)
    assert m(torch.rand(2, 3, 32, 48)).shape == (2, 6, 32, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        m(torch.rand(1, 3, 30, 32))


def test_pairs_both_layouts_and_bad_masks(cells_with_masks, tmp_path):
    pairs, problems = find_mask_pairs(cells_with_masks)
    assert len(pairs) == 12 and not problems
    image, mask = load_pair(pairs[0])
    assert image.shape[:2] == mask.shape and set(np.unique(mask)) <= {0, 1, 2}
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    c = make_cell("monocyte", seed=1, size=48)
    write_image(tmp_path / "images" / "a.png", c.image)
    write_image(tmp_path / "masks" / "a.png", c.mask)  # indexed convention
    write_image(tmp_path / "images" / "b.png", c.image)
    pairs, problems = find_mask_pairs(tmp_path)
    assert [p.image.name for p in pairs] == ["a.png"] and len(problems) == 1
    assert load_pair(pairs[0])[1].max() == 5
    write_image(tmp_path / "small.png", c.mask[:20, :20])
    with pytest.raises(ImageReadError, match="mask is 20x20 but its image"):
        load_pair(MaskPair(tmp_path / "images" / "a.png", tmp_path / "small.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image/mask pairs"):
        find_mask_pairs(tmp_path / "empty")


def test_train_cv_predict_evaluate(cells_with_masks, tmp_path):
    out = tmp_path / "seg"
    assert main(["train", "segmentation", "--data", str(cells_with_masks), "--out", str(out),
                 "--cv", "3", "--epochs", "25", "--image-size", "64", "--width", "8",
                 "--batch-size", "4", "--threads", "1", "--json", str(tmp_path / "t.json")]) == 0
    cfg = json.loads((out / "config.json").read_text())
    # the cartoons' red cells join the masks as pseudo-labels (--other-parts rbc,platelet)
    assert cfg["task"] == "segmentation" and cfg["trained_classes"] == ["background", "nucleus",
                                                                          "cytoplasm", "rbc"]
    cv = cfg["metrics"]["cross_validation"]
    assert cv["k"] == 3 and len(cv["folds"]) == 3 and cv["n_images"] == 12
    # cartoon cells are easy: a model that learnt nothing would sit near 0 for the nucleus
    assert cv["per_class"]["nucleus"]["iou"]["mean"] > 0.5, cv["per_class"]
    assert main(["evaluate", "segmentation", "--model", str(out), "--data", str(cells_with_masks),
                 "--json", str(tmp_path / "e.json")]) == 0
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["n_images"] == 12 and rep["per_class"]["nucleus"]["iou"] > 0.5
    assert main(["evaluate", "segmentation", "--model", str(out), "--data", str(cells_with_masks),
                 "--no-zoom", "--no-balance", "--centre-cell", "--no-mirror", "--zoom-pad", "mirror",
                 "--json", str(tmp_path / "e2.json")]) == 0
    assert json.loads((tmp_path / "e2.json").read_text())["n_images"] == 12
    src = tmp_path / "in"
    write_image(src / "x.jpg", make_cell("neutrophil", seed=40, size=80).image)
    (src / "bad.jpg").write_bytes(b"not a jpeg")
    assert main(["segment", "predict", str(src), "--model", str(out), "--out",
                 str(tmp_path / "pred"), "--all-cells", "--zoom-pad", "mirror"]) == 0
    from hemascope.io.masks import read_part_mask

    parts = read_part_mask(tmp_path / "pred" / "x_parts.png", convention="indexed")
    assert parts.shape == (80, 80) and (parts == 1).any()
    table = (tmp_path / "pred" / "parts.csv").read_text().splitlines()
    assert table[0].startswith("path,nc_ratio,nucleus_lobes,background_px") and len(table) == 2
    nc = float(table[1].split(",")[1])  # nucleus / cell area of the cartoon cell
    assert 0 < nc < 1
    shape = dict(zip(table[0].split(","), table[1].split(",")))
    assert table[0].endswith(",cell_share,nucleus_solidity,nucleus_elongation,cell_solidity,"
                             "cell_elongation")
    assert 0 < float(shape["cell_share"]) < 1 and 0 < float(shape["nucleus_solidity"]) <= 1
    assert (tmp_path / "pred" / "x_overlay.png").is_file()
    # a classifier folder is not a segmentation model
    assert main(["segment", "predict", str(src), "--model", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "p2")]) == 1


def test_augmentation_moves_masks_with_pixels_and_blurs_only_the_image():
    from hemascope.train.config import SegmentationTrainConfig
    from hemascope.train.segmentation import augment_pairs, gaussian_blur

    x = torch.zeros(2, 3, 32, 32)
    x[:, :, 16, 16] = 1.0
    blurred = gaussian_blur(x, 1.5)
    assert blurred.shape == x.shape and blurred.sum().item() == pytest.approx(x.sum().item(), rel=1e-4)
    assert 0 < blurred[0, 0, 16, 16].item() < 0.2 and blurred[0, 0, 16, 17].item() > 0
    assert torch.equal(gaussian_blur(x, 0.1), x)
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[:, 12:20, 12:20] = 1
    img = torch.rand(2, 3, 32, 32) * 0.1 + y[:, None].float() * 0.8
    cfg = SegmentationTrainConfig(zoom=0.0, min_scale=0.0, colour=0.0, blur=2.0)
    for seed in range(6):
        xa, ya = augment_pairs(img, y, cfg, torch.Generator().manual_seed(seed))
        assert set(ya.unique().tolist()) == {0, 1} and int((ya == 1).sum()) == int((y == 1).sum())
        inside = xa[:, 0][ya == 1].mean() > xa[:, 0][ya == 0].mean() + 0.5
        assert inside  # the mask still lies on the bright square, blurred or not
    with pytest.raises(Exception, match="--blur"):
        SegmentationTrainConfig(blur=-1)


def test_min_scale_zooms_out_to_lower_magnifications():
    from hemascope.train.config import SegmentationTrainConfig
    from hemascope.train.segmentation import augment_pairs

    y = torch.zeros(64, 64, 64, dtype=torch.long)
    y[:, 24:40, 24:40] = 1  # a 16 px cell in the middle of each image
    img = y[:, None].float().repeat(1, 3, 1, 1)
    side = {}
    for min_scale in (0.0, 0.5):
        cfg = SegmentationTrainConfig(zoom=0.15, min_scale=min_scale, colour=0.0)
        _, ya = augment_pairs(img, y, cfg, torch.Generator().manual_seed(0))
        side[min_scale] = (ya == 1).sum((1, 2)).float().sqrt() / 16  # the cell's scale per image
    assert side[0.0].min() > 0.8 and side[0.0].max() < 1.2  # +-15 %
    assert side[0.5].min() < 0.7 and side[0.5].max() < 1.2  # down to about half size
    assert (side[0.5] < 0.85).float().mean() > 0.4  # log-uniform: most of the range is zoom-out
    with pytest.raises(Exception, match="--min-scale"):
        SegmentationTrainConfig(min_scale=1.5)


def test_flat_pad_fills_zoomed_out_margins_with_the_border_colour():
    from hemascope.train.config import SegmentationTrainConfig, same_segmentation_recipe
    from hemascope.train.segmentation import augment_pairs

    y = torch.zeros(32, 64, 64, dtype=torch.long)
    y[:, 8:56, 8:56] = 2  # a large cell (cytoplasm) whose mirror copies would show
    y[:, 24:40, 24:40] = 1
    img = torch.full((32, 3, 64, 64), 0.9)  # pale slide
    img[:, 0] = 0.8
    img[(y > 0)[:, None].expand_as(img)] = 0.4
    for flat, copies in ((0.0, True), (1.0, False)):
        cfg = SegmentationTrainConfig(zoom=0.0, min_scale=0.5, colour=0.0, hue=0.0, flat_pad=flat)
        xa, ya = augment_pairs(img, y, cfg, torch.Generator().manual_seed(0))
        edge = torch.zeros(64, 64, dtype=torch.bool)
        edge[:3], edge[-3:], edge[:, :3], edge[:, -3:] = True, True, True, True
        shrunk = (ya == 1).sum((1, 2)) < 0.8 * 256  # zoomed out by more than ~10 %
        assert shrunk.sum() > 5
        on_edge = (ya[shrunk][:, edge] > 0).float().mean().item()
        assert (on_edge > 0.3) == copies, (flat, on_edge)  # mirrored cell parts reach the edge
        if not copies:  # the margin has the slide's colour, red 0.8 and the rest 0.9
            margin = xa[shrunk][..., 0, 0]
            assert torch.allclose(margin, torch.tensor([0.8, 0.9, 0.9]).expand_as(margin))
    with pytest.raises(Exception, match="--flat-pad"):
        SegmentationTrainConfig(flat_pad=1.5)
    now = SegmentationTrainConfig().to_dict()
    older = {k: v for k, v in now.items() if k != "flat_pad"}  # written before --flat-pad
    assert same_segmentation_recipe(older, {**now, "flat_pad": 0.0})
    assert not same_segmentation_recipe(older, {**now, "flat_pad": 0.5})


def test_hue_turns_the_stain_tint_and_leaves_masks_and_brightness():
    from hemascope.train.config import SegmentationTrainConfig
    from hemascope.train.segmentation import augment_pairs, turn_hue

    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.35
    assert turn_hue(x, torch.tensor([90.0, 90.0, 90.0])).sub(0.5).abs().max() < 0.5  # no clipping
    assert torch.allclose(turn_hue(x, torch.tensor([0.0, 360.0, -360.0])), x, atol=1e-5)
    turned = turn_hue(x, torch.tensor([30.0, -30.0, 90.0]))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((turned * luma).sum(1), (x * luma).sum(1), atol=1e-4)  # luma kept
    assert (turned - x).abs().mean() > 0.01  # the colour moved
    back = turn_hue(turned, torch.tensor([-30.0, 30.0, -90.0]))
    assert torch.allclose(back, x, atol=1e-4)
    purple = torch.tensor([0.5, 0.3, 0.6]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    redder = turn_hue(purple, torch.tensor([40.0]))[0, :, 0, 0]
    assert not torch.allclose(redder, purple[0, :, 0, 0], atol=0.02)
    y = torch.randint(0, 3, (4, 16, 16))
    cfg = SegmentationTrainConfig(zoom=0.0, min_scale=0.0, colour=0.0, hue=30.0)
    xa, ya = augment_pairs(torch.rand(4, 3, 16, 16), y, cfg, torch.Generator().manual_seed(1))
    assert xa.min() >= 0 and xa.max() <= 1 and sorted(ya.unique().tolist()) == [0, 1, 2]
    with pytest.raises(Exception, match="--hue"):
        SegmentationTrainConfig(hue=200)
    from hemascope.train.config import same_segmentation_recipe

    now = SegmentationTrainConfig().to_dict()
    older = {k: v for k, v in now.items() if k != "hue"}  # written before --hue existed
    assert not same_segmentation_recipe(older, now)  # it was trained without hue turns
    assert same_segmentation_recipe(older, {**now, "hue": 0.0, "threads": 7})


def test_classical_parts_on_cartoon_cells():
    from hemascope.segment.parts import classical_parts

    truths, preds = [], []
    for i, kind in enumerate(["neutrophil", "lymphocyte", "monocyte", "eosinophil"]):
        c = make_cell(kind, seed=i, size=96)
        truths.append(np.where(c.mask == 5, 0, c.mask))  # red cells count as background
        preds.append(classical_parts(c.image))
    rep = segmentation_report(truths, preds, PARTS)
    assert rep.per_class["nucleus"]["iou"] > 0.6, rep.per_class
    assert classical_parts(np.full((40, 40, 3), 240, np.uint8)).max() == 0  # blank: nothing
    with pytest.raises(ValueError):
        classical_parts(np.zeros((10, 10), np.uint8))


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _free_spot(allowed: np.ndarray, margin: int) -> tuple[int, int] | None:
    """A pixel whose whole ``margin`` neighbourhood is ``allowed``, the farthest from the
    image centre (where the cell is)."""
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    ok = cv2.erode(allowed.astype(np.uint8), k, borderValue=0) > 0
    ys, xs = np.nonzero(ok)
    if not len(ys):
        return None
    h, w = allowed.shape
    i = int(np.argmax((ys - h / 2) ** 2 + (xs - w / 2) ** 2))
    return int(ys[i]), int(xs[i])


def test_classical_all_parts_on_cartoon_cells():
    """--all-parts: red cells where the cartoon has them, a painted platelet and a painted
    vacuole found where they are, none of them on the white cell, nothing invented."""
    from hemascope.segment.parts import classical_parts

    rbc_iou, platelets, vacuoles = [], 0, 0
    kinds = ["neutrophil", "lymphocyte", "monocyte", "eosinophil"]
    for i, kind in enumerate(kinds):
        c = make_cell(kind, seed=i, size=128)
        plain = classical_parts(c.image, all_parts=True)
        assert not (plain == 3).any() and not (plain == 4).any()  # none painted, none found
        assert np.array_equal(classical_parts(c.image), np.where(plain > 2, 0, plain))
        rbc = c.mask == 5
        rbc_iou.append((rbc & (plain == 5)).sum() / (rbc | (plain == 5)).sum())
        # (almost) no red cell on the white cell, whose cytoplasm the rules often miss
        assert (plain == 5)[np.isin(c.mask, (1, 2))].mean() < 0.01
        img = c.image.copy()
        spot = _free_spot(c.mask == 0, 9)
        assert spot is not None
        platelet = _disc(img.shape, *spot, 3)
        img[platelet] = (150, 90, 175)
        parts = classical_parts(img, all_parts=True)
        platelets += bool((parts == 4)[platelet].mean() > 0.5)
        assert not (parts == 4)[np.isin(c.mask, (1, 2))].any()
    assert np.mean(rbc_iou) > 0.5, rbc_iou
    assert platelets == len(kinds), platelets
    # a vacuole: an unstained hole in a blue cytoplasm, found; without it, none is
    rng = np.random.default_rng(0)
    for seed in range(3):
        cell = np.broadcast_to(np.array([236, 226, 222], float), (128, 128, 3)).copy()
        cell[_disc(cell.shape, 64, 64, 34)] = (160, 180, 225)
        cell[_disc(cell.shape, 64, 52 + seed, 13)] = (92, 52, 128)
        whole = np.clip(cell + rng.normal(0, 4, cell.shape), 0, 255).astype(np.uint8)
        assert not (classical_parts(whole, all_parts=True) == 3).any()
        hole = _disc(cell.shape, 64 - seed, 84, 3.5)
        holed = whole.copy()
        holed[hole] = (236, 226, 222)
        parts = classical_parts(holed, all_parts=True)
        vacuoles += bool((parts == 3)[hole].mean() > 0.5)
        assert (parts == 3).sum() < 3 * hole.sum()  # the hole, not the cytoplasm around it
    assert vacuoles == 3


def test_add_pseudo_parts_writes_red_cells_only_where_the_expert_saw_other():
    from hemascope.segment.parts import add_pseudo_parts

    c = make_cell("lymphocyte", seed=0, size=128)
    expert = np.where(c.mask == 5, 0, c.mask)  # CellaVision: red cells are "other"
    out = add_pseudo_parts(c.image, expert, ["rbc", "platelet"])
    rbc = c.mask == 5
    assert (rbc & (out == 5)).sum() / (rbc | (out == 5)).sum() > 0.5
    cell = expert > 0
    assert np.array_equal(out[cell], expert[cell]) and set(np.unique(out)) <= {0, 1, 2, 4, 5}
    # pixels the expert calls cell stay cell even where the rules see a red cell
    claimed = np.where(rbc, 2, expert)
    out2 = add_pseudo_parts(c.image, claimed, ["rbc"])
    assert np.array_equal(out2[claimed > 0], claimed[claimed > 0])
    assert (out2 == 5).sum() < 0.05 * rbc.sum()
    # a mask that already annotates red cells is left as it is; so is an empty list
    assert add_pseudo_parts(c.image, c.mask, ["rbc"]) is c.mask
    assert add_pseudo_parts(c.image, expert, []) is expert
    with pytest.raises(ValueError, match="parts must be among"):
        add_pseudo_parts(c.image, expert, ["nucleus"])


def test_a_set_that_annotates_red_cells_gets_no_pseudo_red_cells(tmp_path):
    from hemascope.segment.data import annotated_parts, find_mask_pairs, load_pairs

    for i, seed in enumerate((0, 1)):  # red cells annotated in one mask, absent in the other
        c = make_cell("lymphocyte", seed=seed, size=96)
        write_image(tmp_path / "images" / f"{i}.png", c.image)
        write_image(tmp_path / "masks" / f"{i}.png", c.mask if i == 0 else
                    np.where(c.mask == 5, 0, c.mask))
    pairs, _ = find_mask_pairs(tmp_path)
    assert annotated_parts(pairs) == {"background", "nucleus", "cytoplasm", "rbc"}
    _, masks, _ = load_pairs(pairs, 64, other_parts=["rbc"])
    assert (masks[0] == 5).any() and not (masks[1] == 5).any()  # the second keeps its "other"


def test_report_scores_parts_the_truth_cannot_hold_as_their_coarse_class():
    from hemascope.taxonomy import CELL_PARTS

    names = list(CELL_PARTS.classes)
    t = np.array([[0, 1], [2, 0]])
    p = np.array([[5, 1], [3, 4]])  # red cell and platelet on "other", vacuole in cytoplasm
    rep = segmentation_report([t], [p], names)
    assert rep.miou == 1.0
    assert rep.to_dict()["merged"] == {"vacuole": "cytoplasm", "platelet": "background",
                                       "rbc": "background"}
    assert segmentation_report([t], [p], names, coarsen=False).miou < 0.5
    t2 = np.array([[5, 1], [2, 0]])  # this truth holds red cells: they are scored as such
    rep2 = segmentation_report([t2], [p], names)
    assert "rbc" not in rep2.merged and rep2.per_class["rbc"]["iou"] == 1.0


def test_other_parts_option_is_checked_and_trains_the_extra_classes(cells_with_masks, tmp_path):
    from hemascope.errors import HemascopeError
    from hemascope.train.config import SegmentationTrainConfig

    with pytest.raises(HemascopeError, match="--other-parts takes"):
        SegmentationTrainConfig(other_parts="rbc,nuclei")
    from hemascope.train.config import same_segmentation_recipe

    now = SegmentationTrainConfig().to_dict()
    older = {k: v for k, v in now.items() if k != "other_parts"}  # written before the option
    assert not same_segmentation_recipe(older, now) and now["other_parts"] == "rbc,platelet"
    assert same_segmentation_recipe(older, {**now, "other_parts": ""})
    out = tmp_path / "seg"
    assert main(["train", "segmentation", "--data", str(cells_with_masks), "--out", str(out),
                 "--other-parts", "rbc", "--epochs", "1", "--image-size", "64", "--width", "4",
                 "--batch-size", "4", "--threads", "1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert "rbc" in cfg["trained_classes"]
    assert cfg["training"]["config"]["other_parts"] == "rbc"
    assert main(["train", "segmentation", "--data", str(cells_with_masks), "--out",
                 str(tmp_path / "off"), "--other-parts", "", "--epochs", "1", "--image-size", "64",
                 "--width", "4", "--batch-size", "4", "--threads", "1"]) == 0
    off = json.loads((tmp_path / "off" / "config.json").read_text())
    assert off["trained_classes"] == ["background", "nucleus", "cytoplasm"]


def test_adapt_batchnorm_changes_a_copy_only(tmp_path):
    from hemascope.models.artifact import LoadedModel
    from hemascope.segment.predict import adapt_batchnorm

    torch.manual_seed(0)
    model = UNet(6, width=4).eval()
    cfg = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "classes": PARTS}
    loaded = LoadedModel(model, cfg, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cells = [make_cell("monocyte", seed=i, size=48).image for i in range(8)]
    adapted = adapt_batchnorm(loaded, cells)
    assert adapted.config["adapted"] == {"method": "bn", "images": 8, "layers": 18}
    first = model.down[0][1]
    new_first = adapted.model.down[0][1]
    assert not torch.allclose(new_first.running_mean, first.running_mean)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # original kept
    assert torch.equal(adapted.model.down[0][0].weight, model.down[0][0].weight)  # weights kept
    with pytest.raises(ValueError, match="at least 8 images"):
        adapt_batchnorm(loaded, cells[:3])


def test_class_weights_lift_only_the_rare_parts():
    from hemascope.segment.pseudo import IGNORE
    from hemascope.train.segmentation import class_weights

    y = np.zeros((4, 50, 50), np.uint8)
    y[:, :20] = 1  # nucleus 40 %
    y[:, 20:30] = 2  # cytoplasm 20 %
    y[0, 40, 40] = 4  # one platelet pixel
    y[1, 45:50, 45:50] = IGNORE  # unsure pixels do not count
    w = class_weights(y, 6, cap=10.0).tolist()
    assert w[0] == w[1] == 1.0 and w[3] == w[5] == 1.0  # above the median share, or absent
    # cytoplasm, 2,000 of 9,975 pixels, below the median share of the four present classes
    assert w[2] == pytest.approx(np.sqrt((2000 / 9975 + 3974 / 9975) / 2 / (2000 / 9975)), rel=1e-5)
    assert w[4] == 10.0  # a platelet pixel in 10,000: capped
    assert class_weights(np.full((2, 4, 4), IGNORE, np.uint8), 6).tolist() == [1.0] * 6


def test_pseudo_labels_make_a_training_folder(tmp_path):
    src = tmp_path / "cells"
    for i, kind in enumerate(["neutrophil", "monocyte"]):
        write_image(src / f"c{i}.jpg", make_cell(kind, seed=i, size=96).image)
    write_image(src / "blank.png", np.full((40, 40, 3), 240, np.uint8))
    out = tmp_path / "pseudo"
    assert main(["segment", "pseudo", str(src), "--out", str(out)]) == 0
    pairs, problems = find_mask_pairs(out)
    assert sorted(p.image.name for p in pairs) == ["c0.jpg", "c1.jpg"] and not problems
    image, mask = load_pair(pairs[0])
    assert (mask == 1).any() and image.shape[:2] == mask.shape
    assert mask.max() <= 2  # nucleus and cytoplasm only, unless asked for all parts
    every = tmp_path / "all"
    assert main(["segment", "pseudo", str(src), "--out", str(every), "--all-parts"]) == 0
    _, mask = load_pair(find_mask_pairs(every)[0][0])
    assert (mask == 5).any()  # the cartoon's red cells


def test_confident_labels_and_a_loss_blind_to_ignored_pixels():
    from hemascope.segment.pseudo import IGNORE, confident_labels
    from hemascope.train.segmentation import seg_loss

    probs = np.zeros((3, 2, 2), np.float32)
    probs[:, 0, 0] = [0.95, 0.03, 0.02]
    probs[:, 0, 1] = [0.1, 0.9, 0.0]
    probs[:, 1, 0] = [0.4, 0.3, 0.3]
    probs[:, 1, 1] = [0.0, 0.05, 0.95]
    assert confident_labels(probs, 0.9).tolist() == [[0, 1], [IGNORE, 2]]
    assert (confident_labels(probs, 0.0) != IGNORE).all()
    with pytest.raises(ValueError):
        confident_labels(probs, 1.5)
    logits = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    y[:, :4] = IGNORE
    other = y.clone()
    other[:, :4] = 0  # what the ignored pixels would have said: must not matter
    changed = logits.clone()
    changed[:, :, :4] += 5.0  # nor what the model predicts there
    a = seg_loss(logits, y, dice_weight=1.0)
    assert torch.isfinite(a) and torch.allclose(a, seg_loss(changed, y, dice_weight=1.0))
    assert not torch.allclose(a, seg_loss(logits, other, dice_weight=1.0))
    assert seg_loss(logits, torch.full_like(y, IGNORE), dice_weight=1.0) == 0


def test_self_training_on_unlabelled_cells(cells_with_masks, tmp_path):
    """A teacher labels unlabelled cells where it is sure; the student trains on both and is
    scored (cross-validation) on labelled cells only."""
    unl = tmp_path / "unlabelled" / "sub"
    for i, kind in enumerate(["neutrophil", "lymphocyte", "monocyte", "basophil"] * 2):
        write_image(unl / f"u{i}.jpg", make_cell(kind, seed=100 + i, size=72).image)
    (unl / "broken.jpg").write_bytes(b"nope")
    out = tmp_path / "st"
    common = ["train", "segmentation", "--data", str(cells_with_masks), "--image-size", "64",
              "--width", "8", "--batch-size", "4", "--threads", "1", "--epochs", "25"]
    assert main(common + ["--out", str(out), "--cv", "3", "--unlabelled", str(tmp_path / "unlabelled"),
                          "--pseudo-limit", "6", "--min-confidence", "0.4"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    st = cfg["training"]["self_training"]
    assert st["n_unlabelled"] == 6 and 0 < st["pseudo_labelled_pixel_fraction"] <= 1
    assert st["student_epochs"] == round(25 * 12 / 18)  # same optimiser steps as the teacher
    assert cfg["metrics"]["cross_validation"]["per_class"]["nucleus"]["iou"]["mean"] > 0.5
    assert main(common + ["--out", str(tmp_path / "x"), "--unlabelled", str(tmp_path / "none")]) == 1


PARTS = ["background", "nucleus", "cytoplasm", "vacuole", "platelet", "rbc"]


def test_outline_from_parts_takes_the_centre_cell_with_its_lobes():
    from hemascope.segment.outline import outline_from_parts

    lab = np.zeros((100, 100), np.uint8)
    lab[20:80, 20:80] = 2  # cytoplasm of the centre cell
    lab[30:45, 30:70] = 1  # two nucleus lobes inside it
    lab[55:70, 30:70] = 1
    lab[48:52, 48:52] = 3  # a vacuole: part of the cell
    lab[0:12, 0:12] = 2  # a piece of a neighbour in the corner
    lab[85:95, 85:95] = 5  # a red cell: not part of any white cell
    lab[60:64, 22:26] = 0  # a hole inside the cell is filled
    o = outline_from_parts(lab, PARTS)
    assert o.box == (20.0, 20.0, 80.0, 80.0)
    assert o.cell_area == 60 * 60 and o.nucleus_area == 15 * 40 * 2
    assert len(o.nucleus) == 2 and o.nc_ratio == pytest.approx(1200 / 3600)
    xs = [x for x, _ in o.polygon]
    assert min(xs) >= 20 and max(xs) <= 80  # the corner piece is not in the outline
    moved = o.placed(2.0, 3.0, 10, 5, width=150, height=200)
    assert moved.box == (50.0, 65.0, 150.0, 200.0)  # scaled, shifted, clipped at the edges
    assert moved.cell_area == 3600 * 6 and moved.nc_ratio == pytest.approx(o.nc_ratio)


def test_outline_from_parts_nearest_the_centre_or_none():
    from hemascope.segment.outline import outline_from_parts

    lab = np.zeros((100, 100), np.uint8)
    assert outline_from_parts(lab, PARTS) is None  # no cell at all
    lab[5:25, 5:25] = 1  # far from the centre
    lab[40:58, 62:80] = 2  # nearer the centre: this one
    o = outline_from_parts(lab, PARTS)
    assert o.box == (62.0, 40.0, 80.0, 58.0) and o.nucleus == [] and o.nc_ratio == 0
    lab[:] = 0
    lab[50, 50] = 1  # too small to be a cell
    assert outline_from_parts(lab, PARTS) is None
    with pytest.raises(ValueError, match="none of"):
        outline_from_parts(lab, ["background", "rbc"])


def test_keep_centre_cell_drops_parts_of_other_cells_from_labels_and_probabilities():
    from hemascope.segment.outline import keep_centre_cell

    lab = np.zeros((100, 100), np.uint8)
    lab[20:80, 20:80] = 2  # the centre cell's cytoplasm
    lab[35:65, 35:65] = 1  # and nucleus
    lab[0:12, 0:12] = 2  # a red cell taken for cytoplasm
    lab[90:98, 0:8] = 1  # a neighbour's nucleus
    lab[85:95, 85:95] = 5  # a red cell called a red cell: kept
    out = keep_centre_cell(lab, PARTS)
    assert (out[:12, :12] == 0).all() and (out[90:98, :8] == 0).all()
    assert np.array_equal(out[20:80, 20:80], lab[20:80, 20:80]) and (out[85:95, 85:95] == 5).all()
    assert np.array_equal(lab[:12, :12], np.full((12, 12), 2))  # the input is untouched
    probs = np.eye(len(PARTS), dtype=np.float32)[lab].transpose(2, 0, 1) * 0.7 + 0.05
    kept = keep_centre_cell(probs, PARTS)
    assert np.array_equal(kept.argmax(0), out) and np.allclose(kept.sum(0), probs.sum(0))
    assert np.array_equal(keep_centre_cell(np.zeros_like(lab), PARTS), np.zeros_like(lab))
    other = lab.copy()
    other[lab == 0] = 1  # nucleus everywhere: one region, nothing dropped
    assert np.array_equal(keep_centre_cell(other, PARTS), other)


class _DarkIsNucleus(torch.nn.Module):
    """A stand-in part model: nucleus where the (normalised) image is dark, else background."""

    def forward(self, x):
        dark = (x.mean(1, keepdim=True) < 0).float() * 10
        bg = 10 - dark
        rest = torch.zeros_like(dark).repeat(1, 4, 1, 1)
        return torch.cat([bg, dark, rest], 1)


def test_zoom_window_gives_the_cell_its_training_share():
    from hemascope.segment.predict import ZOOM_RANGE, zoom_window

    assert zoom_window((400, 400), (180, 180, 220, 220), 1600, 0.01) is None  # share 0.01 = training
    x0, y0, side = zoom_window((400, 400), (180, 180, 220, 220), 1600, 0.04)  # 2x too small
    assert side == 200 and (x0, y0) == (100, 100) and 1600 / side ** 2 == pytest.approx(0.04)
    x0, y0, side = zoom_window((100, 100), (10, 10, 90, 90), 6400, 0.16)  # too large: zoom out
    assert side == 200 and (x0, y0) == (-50, -50)
    _, _, side = zoom_window((400, 400), (199, 199, 201, 201), 4, 0.5)
    assert side == round(400 / ZOOM_RANGE[1])  # rescaling capped


def test_segment_arrays_balances_and_zooms_onto_the_training_cells(monkeypatch):
    from hemascope.models.artifact import LoadedModel
    from hemascope.segment import predict
    from hemascope.train.segmentation import PARTS

    image = np.full((300, 300, 3), 200, np.uint8)
    yy, xx = np.mgrid[:300, :300]
    image[(yy - 150) ** 2 + (xx - 160) ** 2 <= 15 ** 2] = 40  # a small dark cell
    cfg = {"image_size": 64, "mean": [0.5] * 3, "std": [0.2] * 3, "classes": PARTS,
           "background": [220.0, 200.0, 180.0], "cell_fraction": 0.05}
    loaded = LoadedModel(_DarkIsNucleus(), cfg, None)
    calls = []
    real = predict._segment
    monkeypatch.setattr(predict, "_segment", lambda m, ims, **kw: calls.append(
        [np.asarray(i).copy() for i in ims]) or real(m, ims, **kw))
    assert len(predict.segment_arrays(loaded, [image], zoom=False)) == 1 and len(calls) == 1
    calls.clear()
    out = predict.segment_arrays(loaded, [image])[0]  # zoom is on by default
    assert out.shape == (300, 300) and out[150, 160] == PARTS.index("nucleus") and out[10, 10] == 0
    first, second = calls[0][0], calls[1][0]
    assert np.abs(first[5, 5].astype(float) - cfg["background"]).max() <= 2  # balanced
    area = np.pi * 15 ** 2
    assert second.shape[0] == pytest.approx(300 / np.sqrt(0.05 * 300 * 300 / area), abs=3)  # zoomed
    calls.clear()
    predict.segment_arrays(loaded, [image], balance=False, zoom=False)
    assert len(calls) == 1 and np.array_equal(calls[0][0], image)
    calls.clear()
    predict.segment_arrays(loaded, [image], at_input_size=True, zoom=True)
    assert len(calls) == 1  # no zoom on input-size maps
    image[20:40, 20:40] = 40  # a second dark blob in the corner
    both = predict.segment_arrays(loaded, [image], zoom=False, centre=False)[0]
    assert both[30, 30] == PARTS.index("nucleus")
    only = predict.segment_arrays(loaded, [image], zoom=False, centre=True)[0]
    assert only[30, 30] == 0 and only[150, 160] == PARTS.index("nucleus")


def test_zoom_pass_keeps_red_cells_that_its_window_cuts(monkeypatch):
    """The second pass decides the cell's parts; a red cell crossing the window's edge keeps
    the first pass's label on both sides."""
    from hemascope.models.artifact import LoadedModel
    from hemascope.segment import predict
    from hemascope.train.segmentation import PARTS

    rbc, nucleus = PARTS.index("rbc"), PARTS.index("nucleus")
    h = w = 200
    first = np.zeros((h, w), np.uint8)
    first[95:105, 95:105] = nucleus  # a small cell: the zoom window is about 3 times smaller
    first[60:140, 120:190] = rbc  # a red cell across the window's right edge (x 133)
    calls = []

    def fake(m, ims, **kw):
        calls.append(1)
        if len(calls) == 1:
            return [first.copy()]
        side = np.asarray(ims[0]).shape[0]
        second = np.zeros((side, side), np.uint8)  # sees no red cell, a larger nucleus
        c = side // 2
        second[c - 20:c + 20, c - 20:c + 20] = nucleus
        return [second]

    monkeypatch.setattr(predict, "_segment", fake)
    cfg = {"image_size": 64, "mean": [0.5] * 3, "std": [0.2] * 3, "classes": PARTS,
           "cell_fraction": 0.2}
    out = predict.segment_arrays(LoadedModel(None, cfg, None), [np.full((h, w, 3), 200, np.uint8)],
                                 balance=False, mirror=False, centre=False)[0]
    assert len(calls) == 2  # the zoom pass ran
    assert (out[60:140, 120:190] == rbc).all()  # the red cell is whole
    assert out[100, 100] == nucleus and (out == nucleus).sum() > 100  # the window's cell


def _photo(h, w, seed=0):
    """A stand-in for a photographed field: background with camera noise."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(190, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def test_flat_margins_are_found_on_padded_crops_not_on_photographed_background():
    from hemascope.segment.margins import flat_margins

    photo = _photo(100, 120)
    assert flat_margins(photo) == (0, 0, 0, 0)
    padded = np.pad(photo, ((10, 5), (0, 20), (0, 0)), constant_values=230)
    assert flat_margins(padded) == (10, 5, 0, 20)
    framed = padded.copy()
    framed[:10] = 10  # a top strip of another colour than the right one
    assert flat_margins(framed) == (10, 5, 0, 20)
    assert flat_margins(padded[..., 0]) == (10, 5, 0, 20)  # grey
    assert flat_margins(np.full((50, 50, 3), 7, np.uint8)) == (0, 0, 0, 0)  # an empty frame
    tiny = np.pad(_photo(12, 12), ((40, 40), (40, 40), (0, 0)), constant_values=230)
    assert flat_margins(tiny) == (0, 0, 0, 0)  # too little inside to stand for the image
    noisy = padded.copy()
    noisy[2, 60] += 5  # one pixel off the margin colour ends the top strip there
    assert flat_margins(noisy)[0] == 2


def test_mirror_margins_refill_the_strips_and_clear_margins_empties_them():
    from hemascope.segment.margins import clear_margins, mirror_margins, scale_margins

    photo = _photo(60, 80)
    padded = np.pad(photo, ((10, 0), (5, 15), (0, 0)), constant_values=230)
    m = (10, 0, 5, 15)
    out = mirror_margins(padded, m)
    assert out.shape == padded.shape and out.dtype == padded.dtype
    assert np.array_equal(out[10:, 5:85], photo)  # the content is untouched
    assert np.array_equal(out[9], out[11]) and np.array_equal(out[:, 4], out[:, 6])  # mirrored
    assert mirror_margins(padded, (0, 0, 0, 0)) is padded
    labels = np.ones((70, 100), np.uint8)
    cleared = clear_margins(labels, m)
    assert cleared[:10].max() == 0 and cleared[:, :5].max() == 0 and cleared[:, 85:].max() == 0
    assert cleared[10:, 5:85].min() == 1 and labels.min() == 1  # a copy
    probs = np.full((3, 70, 100), 1 / 3, np.float32)
    p = clear_margins(probs, m)
    assert np.allclose(p[:, 0, 0], [1, 0, 0]) and np.allclose(p[:, 40, 40], 1 / 3)
    assert scale_margins(m, (70, 100), (35, 50)) == (5, 0, 2, 8)


def test_segment_arrays_mirrors_flat_margins_and_calls_them_background(monkeypatch):
    from hemascope.models.artifact import LoadedModel
    from hemascope.segment import predict
    from hemascope.train.segmentation import PARTS

    photo = _photo(120, 120)
    yy, xx = np.mgrid[:120, :120]
    photo[(yy - 60) ** 2 + (xx - 60) ** 2 <= 12 ** 2] = 40
    image = np.pad(photo, ((40, 40), (40, 40), (0, 0)), constant_values=0)  # dark padding
    cfg = {"image_size": 64, "mean": [0.5] * 3, "std": [0.2] * 3, "classes": PARTS}
    loaded = LoadedModel(_DarkIsNucleus(), cfg, None)
    seen = []
    real = predict._segment
    monkeypatch.setattr(predict, "_segment", lambda m, ims, **kw: seen.append(
        [np.asarray(i).copy() for i in ims]) or real(m, ims, **kw))
    as_is = predict.segment_arrays(loaded, [image], mirror=False, centre=False)[0]
    assert np.array_equal(seen[0][0], image) and as_is[5, 5] == PARTS.index("nucleus")
    seen.clear()
    out = predict.segment_arrays(loaded, [image], centre=False)[0]  # mirror is on by default
    assert seen[0][0][:40].min() > 100  # the dark margin became mirrored background
    assert out.shape == (200, 200) and out[100, 100] == PARTS.index("nucleus")
    assert out[:40].max() == 0 and out[:, 160:].max() == 0  # margins are background
    probs = predict.segment_arrays(loaded, [image], return_probs=True, centre=False)[0]
    assert probs.shape == (len(PARTS), 200, 200) and np.allclose(probs[0, :40], 1)
    small = predict.segment_arrays(loaded, [image], at_input_size=True, centre=False)[0]
    assert small.shape == (64, 64) and small[:12].max() == 0
    with pytest.raises(ValueError, match="zoom_pad"):
        predict.segment_arrays(loaded, [image], zoom_pad="wrap")


def test_zoom_pad_mirror_fills_the_window_from_the_image(monkeypatch):
    from hemascope.models.artifact import LoadedModel
    from hemascope.segment import predict
    from hemascope.train.segmentation import PARTS

    image = _photo(100, 100)
    yy, xx = np.mgrid[:100, :100]
    image[(yy - 50) ** 2 + (xx - 50) ** 2 <= 40 ** 2] = 40  # a cell too large: zoom out
    cfg = {"image_size": 64, "mean": [0.5] * 3, "std": [0.2] * 3, "classes": PARTS,
           "cell_fraction": 0.1}
    loaded = LoadedModel(_DarkIsNucleus(), cfg, None)
    windows, seen = {}, []
    real = predict._segment
    monkeypatch.setattr(predict, "_segment", lambda m, ims, **kw: seen.append(
        np.asarray(ims[0]).copy()) or real(m, ims, **kw))
    for pad in ("border", "mirror"):
        seen.clear()
        predict.segment_arrays(loaded, [image], centre=False, balance=False, zoom_pad=pad)
        assert len(seen) == 2 and seen[1].shape[0] > 100  # the window is larger than the image
        windows[pad] = seen[1]
    off = (windows["border"].shape[0] - 100) // 2
    corner = (slice(0, off - 1), slice(0, off - 1))
    assert (windows["border"][corner] == windows["border"][0, 0]).all()  # one colour
    assert np.ptp(windows["mirror"][corner]) > 10  # the image's noise, mirrored
