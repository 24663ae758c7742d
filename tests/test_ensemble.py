import numpy as np
import pytest

from hemascope.detect.ensemble import (Detections, iou_matrix, nms, nms_fusion, vote_fusion,
                                       weighted_boxes_fusion)


def D(boxes, scores, labels):
    return Detections(np.array(boxes, float), np.array(scores, float), np.array(labels))


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert iou_matrix(a, b)[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_vote_keeps_only_majority_boxes_with_weighted_mean():
    m1 = D([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [1, 2])
    m2 = D([[2, 0, 12, 10]], [0.6], [1])
    m3 = D([[1, 1, 11, 11]], [0.5], [0])
    out = vote_fusion([m1, m2, m3], iou=0.5)
    # the lone box at (50, 50) is found by 1 of 3 models: dropped
    assert len(out) == 1
    assert out.labels[0] == 1  # two votes for class 1, one for class 0
    w = np.array([0.9, 0.6, 0.5])
    expected = (np.array([[0, 0, 10, 10], [2, 0, 12, 10], [1, 1, 11, 11]]) * w[:, None]).sum(0) / w.sum()
    np.testing.assert_allclose(out.boxes[0], expected)
    assert out.scores[0] == pytest.approx(w.sum() / 3)


def test_vote_needs_more_than_half():
    a = D([[0, 0, 10, 10]], [0.9], [0])
    b = D([[0, 0, 10, 10]], [0.9], [0])
    empty = Detections.empty()
    assert len(vote_fusion([a, b, empty, empty])) == 0  # 2 of 4 is not more than half
    assert len(vote_fusion([a, b, Detections.empty()])) == 1


def test_one_vote_per_model_even_with_duplicates():
    dup = D([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])
    assert len(vote_fusion([dup, Detections.empty(), Detections.empty()])) == 0


def test_wbf_fuses_per_class_and_scales_score():
    m1 = D([[0, 0, 10, 10]], [0.8], [0])
    m2 = D([[0, 0, 12, 10], [0, 0, 10, 10]], [0.4, 0.7], [0, 1])
    out = weighted_boxes_fusion([m1, m2], iou=0.55)
    assert sorted(out.labels.tolist()) == [0, 1]
    c0 = out.labels == 0
    np.testing.assert_allclose(out.boxes[c0][0], [0, 0, (10 * 0.8 + 12 * 0.4) / 1.2, 10])
    assert out.scores[c0][0] == pytest.approx(0.6)  # mean 0.6, 2 of 2 models
    assert out.scores[~c0][0] == pytest.approx(0.35)  # 0.7 from 1 of 2 models


def test_nms_and_nms_fusion():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    assert nms(boxes, np.array([0.5, 0.9, 0.3]), iou=0.5).tolist() == [1, 2]
    out = nms_fusion([D(boxes[:2], [0.5, 0.9], [0, 0]), D(boxes[2:], [0.3], [0])])
    assert out.scores.tolist() == [0.9, 0.3]


def test_empty_inputs():
    assert len(vote_fusion([])) == 0 and len(weighted_boxes_fusion([Detections.empty()])) == 0
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2))


def test_wbf_keeps_a_models_own_near_duplicates_apart():
    # each model finds the cell at 0.9; model 0 also left a shifted 0.3 duplicate (IoU ~0.67)
    cell, dup = [0, 0, 10, 10], [0, 0, 10, 15]
    m0 = D([cell, dup], [0.9, 0.3], [0, 0])
    m1 = D([cell], [0.9], [0])
    out = weighted_boxes_fusion([m0, m1], iou=0.55)
    assert out.scores.tolist() == pytest.approx([0.9, 0.15])  # not diluted to (0.9+0.9+0.3)/3
    np.testing.assert_allclose(out.boxes[0], cell)  # and the fused box is not dragged


def test_tta_views_map_boxes_back_to_the_field():
    from hemascope.detect.tta import VIEWS, detect_views, flip_detections, flip_image

    d = D([[2, 3, 12, 8]], [0.9], [1])
    img = np.zeros((20, 30, 3), np.uint8)
    img[3:8, 2:12] = 255
    shapes = set()
    for h_flip, v_flip, transpose in VIEWS:
        m = flip_image(img, horizontal=h_flip, vertical=v_flip, transpose=transpose)
        shapes.add(m.shape)
        ys, xs = np.nonzero(m[..., 0])
        seen = D([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.9], [1])
        back = flip_detections(seen, 20, 30, horizontal=h_flip, vertical=v_flip,
                               transpose=transpose)
        np.testing.assert_allclose(back.boxes, d.boxes)
    assert shapes == {(20, 30, 3), (30, 20, 3)}  # the last four views are transposed
    assert len({flip_image(img, horizontal=a, vertical=b, transpose=t).tobytes()
                for a, b, t in VIEWS}) == 8  # eight distinct views of an asymmetric field
    for bad in (3, 5, 9):
        with pytest.raises(ValueError, match="views"):
            detect_views(None, img, views=bad)
