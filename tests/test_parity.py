"""The export's parity check (mask_od.parity): refuses each real kind of export bug on small and large check sets,
accepts a file that decides like its SavedModel even where a small set's mAP differs by a few points."""

import numpy as np
import pytest

from mask_od.detections import Detections

LM = {1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}


def make_set(n_images: int, seed: int = 0):
    """A SavedModel's detections on ``n_images`` photos of 400 x 300 px: 1-4 faces each (the rare class on every
    tenth image), each found with a jittered box at a score of 0.3-0.95, a few false positives and faint detections
    under 0.3. Returns (ground truth per image, sizes, detections per image)."""
    rng = np.random.default_rng(seed)
    gt, sizes, dets = [], [], []
    for i in range(n_images):
        h, w = 300, 400
        k = int(rng.integers(1, 5))
        y0, x0 = rng.uniform(0.05, 0.7, k), rng.uniform(0.05, 0.75, k)
        size = rng.uniform(0.06, 0.2, k)
        boxes = np.stack([y0, x0, y0 + size * 4 / 3, x0 + size], 1).astype(np.float32)
        classes = rng.choice([1, 2], k, p=[0.75, 0.25])
        if i % 10 == 0:
            classes[0] = 3
        gt.append((boxes, classes))
        sizes.append((h, w))
        found = rng.random(k) < 0.85
        jitter = rng.normal(0, 0.004, (k, 4)).astype(np.float32)
        db, dc = boxes[found] + jitter[found], np.where(rng.random(k) < 0.9, classes, rng.choice([1, 2, 3], k))[found]
        ds = rng.uniform(0.3, 0.95, int(found.sum()))
        fp = int(rng.integers(0, 3))
        fb = np.concatenate([rng.uniform(0, 0.8, (fp, 2)), np.zeros((fp, 2))], 1).astype(np.float32)
        fb[:, 2:] = fb[:, :2] + 0.1
        faint = rng.uniform(0.05, 0.3, fp)
        dets.append(Detections.from_arrays(np.concatenate([db, fb]), np.concatenate([dc, rng.choice([1, 2, 3], fp)]),
                                           np.concatenate([ds, faint]), LM))
    return gt, sizes, dets


def edit(dets, fn):
    return [Detections.from_arrays(*fn(d.boxes.copy(), d.classes.copy(), d.scores.copy()), LM) for d in dets]


def quantized(dets, seed=1):
    """What an int8 file does to the SavedModel's detections: scores within +-0.02, box corners within ~0.5 px,
    faint detections near the NMS threshold coming and going."""
    rng = np.random.default_rng(seed)

    def f(b, c, s):
        keep = (s >= 0.1) | (rng.random(len(s)) < 0.5)
        return (b + rng.normal(0, 0.0015, b.shape))[keep], c[keep], np.clip(s + rng.uniform(-0.02, 0.02, len(s)), 0, 1)[keep]
    return edit(dets, f)


BUGS = {
    "a class that never comes out": lambda b, c, s: (b[c != 3], c[c != 3], s[c != 3]),
    "halved scores": lambda b, c, s: (b, c, s / 2),
    "boxes shifted by 3 px": lambda b, c, s: (b + np.array([0, 3 / 400, 0, 3 / 400], np.float32), c, s),
    "no detections": lambda b, c, s: (b[:0], c[:0], s[:0]),
}


@pytest.mark.parametrize("n_images", [30, 300])
@pytest.mark.parametrize("bug", list(BUGS))
def test_each_export_bug_is_refused_on_small_and_large_sets(bug, n_images):
    from mask_od.parity import compare, parity_failures

    gt, sizes, ref = make_set(n_images)
    c = compare(ref, edit(ref, BUGS[bug]), gt, sizes, LM)
    assert parity_failures(c, "model_int8.tflite"), (bug, c)
    assert all(f"on {n_images} images" in f for f in parity_failures(c, "model_int8.tflite"))
    # the same check set with a file that only rounds like int8 passes: the refusal is the bug's
    assert parity_failures(compare(ref, quantized(ref), gt, sizes, LM), "model_int8.tflite") == []


def test_a_file_that_decides_alike_is_accepted_where_30_images_move_map_by_points():
    """On 30 images the rare class has 3 faces: two near-tied detections (a false positive at 0.42, the face at 0.41
    in the SavedModel; rounded the other way in the file) move its AP, and so the mAP@0.5, by several points although
    every decision agrees. The old rule (1 point of mAP) refused such files; the bootstrap interval shows that 30
    images cannot tell."""
    from mask_od.parity import compare, image_matches, map50, parity_failures

    gt, sizes, ref = make_set(30, seed=3)
    rare = [i for i, (_, c) in enumerate(gt) if 3 in c]
    assert len(rare) == 3

    def tie(d, i, fp_score, tp_score):
        b, c = gt[i]
        j = int(np.where(c == 3)[0][0])
        far = np.array([[0.9, 0.9, 0.99, 0.99]], np.float32)  # a false positive: nowhere near a face
        keep = d.classes != 3
        return Detections.from_arrays(np.concatenate([d.boxes[keep], b[j:j + 1], far]),
                                      np.concatenate([d.classes[keep], [3, 3]]),
                                      np.concatenate([d.scores[keep], [tp_score, fp_score]]), LM)

    ref = [tie(d, i, 0.40, 0.41) if i in rare else d for i, d in enumerate(ref)]
    lite = quantized(ref, seed=2)
    lite = [tie(d, i, 0.42, 0.41) if i in rare else d for i, d in enumerate(lite)]
    drop = map50([image_matches(d, *g, list(LM)) for d, g in zip(ref, gt)], list(LM)) - \
        map50([image_matches(d, *g, list(LM)) for d, g in zip(lite, gt)], list(LM))
    assert drop > 0.02, drop  # the old rule refused this file
    c = compare(ref, lite, gt, sizes, LM)
    assert c["map50_drop"] == pytest.approx(drop)
    assert c["map50_drop_ci95"][0] <= 0.01 < c["map50_drop_ci95"][1]
    assert parity_failures(c, "model_int8.tflite") == [], c


def test_map50_is_pycocotools_map50():
    """The bootstrap's mAP@0.5 (numpy, weighted resamples) equals pycocotools' on the same detections, and a resample
    drawn as weights equals the same images concatenated."""
    from mask_od.evaluate import Sample, coco_metrics
    from mask_od.parity import image_matches, map50

    gt, sizes, dets = make_set(40, seed=5)
    samples = [Sample(i + 1, w, h, b, c, d) for i, ((b, c), (h, w), d) in enumerate(zip(gt, sizes, dets))]
    matches = [image_matches(d, b, c, list(LM)) for d, (b, c) in zip(dets, gt)]
    assert map50(matches, list(LM)) == pytest.approx(coco_metrics(samples, LM)["mAP50"], abs=1e-9)
    take = np.random.default_rng(0).integers(0, 40, (3, 40))
    for t, m in zip(take, map50(matches, list(LM), take)):
        resampled = [Sample(k + 1, samples[i].width, samples[i].height, samples[i].gt_boxes, samples[i].gt_classes,
                            samples[i].detections) for k, i in enumerate(t)]
        assert m == pytest.approx(coco_metrics(resampled, LM)["mAP50"], abs=1e-9)


def test_agreement_bound_follows_the_number_of_detections():
    from mask_od.parity import MIN_AGREEMENT, wilson_upper

    assert wilson_upper(4, 5) > MIN_AGREEMENT  # one miss in five: too few to refuse
    assert wilson_upper(170, 200) < MIN_AGREEMENT  # 15% missed in 200: refused
    assert wilson_upper(0, 2) < MIN_AGREEMENT and wilson_upper(0, 0) == 1.0


def test_a_class_seen_only_faintly_may_round_away_but_a_confident_one_may_not():
    """int8 may lose two faint detections (scores near the NMS threshold) of a class: that is no vanished class. The
    same class with a detection the SavedModel shows (score >= 0.3) that never comes out of the file is refused."""
    from mask_od.parity import compare, parity_failures

    gt, sizes, ref = make_set(20, seed=4)
    faint = edit(ref, lambda b, c, s: (b, c, np.where(c == 3, np.minimum(s, 0.2), s)))
    lost = edit(faint, BUGS["a class that never comes out"])
    assert parity_failures(compare(faint, lost, gt, sizes, LM), "model_int8.tflite") == []
    failures = parity_failures(compare(ref, edit(ref, BUGS["a class that never comes out"]), gt, sizes, LM), "model_int8.tflite")
    assert any("never outputs mask_weared_incorrect" in f for f in failures), failures


def test_score_shift_is_judged_by_its_interval_on_a_few_detections():
    """CI (stop 33): the notebook's tiny export, checked on its one test photo, was refused for a median int8 score
    shift of -0.086 over 6 detections. A handful of detections on one photo cannot show a shift: the file is refused
    only when the whole 95% interval of the median lies past the allowance (from 6 detections on: all of them
    shifted the same way beyond it), and on hundreds of detections the interval is tight around the median."""
    from mask_od.parity import MAX_SCORE_SHIFT, compare, parity_failures

    boxes = np.array([[0.1 * i, 0.05, 0.1 * i + 0.08, 0.12] for i in range(8)], np.float32)
    gt = [(boxes, np.ones(8, np.int64))]
    scores = np.linspace(0.5, 0.9, 8).astype(np.float32)
    ref = [Detections.from_arrays(boxes, np.ones(8, np.int64), scores, LM)]

    def shifted(diffs):
        return [Detections.from_arrays(boxes, np.ones(8, np.int64), scores + np.asarray(diffs, np.float32), LM)]

    mixed = compare(ref, shifted([-0.09, -0.08, -0.1, 0.01, -0.07, -0.09, 0.02, -0.06]), gt, [(300, 400)], LM)
    assert mixed["score_shift"] < -MAX_SCORE_SHIFT  # the old rule refused this file
    assert mixed["score_shift_ci95"][1] > -MAX_SCORE_SHIFT and parity_failures(mixed, "model_int8.tflite") == [], mixed
    every = compare(ref, shifted([-0.09, -0.08, -0.1, -0.06, -0.07, -0.09, -0.11, -0.06]), gt, [(300, 400)], LM)
    failures = parity_failures(every, "model_int8.tflite")
    assert any("scores are shifted by -0.085" in f and "95% interval" in f for f in failures), failures
    few = compare([ref[0].select(np.arange(3))], [shifted([-0.2] * 8)[0].select(np.arange(3))], gt, [(300, 400)], LM)
    assert few["score_shift_ci95"] == [None, None] and not any("shifted" in f for f in parity_failures(few, "x"))
    # under 6 pairs only the spread refuses: 2 of 3 detections 0.15 or more apart (an int8 file calibrated on blank
    # images moved every score by -0.315), not 1 of 3
    def three(diffs):  # the first three faces alone, the file's scores moved by ``diffs``
        one_class = np.ones(3, np.int64)
        return compare([Detections.from_arrays(boxes[:3], one_class, scores[:3], LM)],
                       [Detections.from_arrays(boxes[:3], one_class, scores[:3] + np.float32(diffs), LM)],
                       [(boxes[:3], one_class)], [(300, 400)], LM)

    two = three([-0.3, -0.2, 0.0])
    assert any("at the 90th percentile of 3 matched detections" in f for f in parity_failures(two, "x")), two
    assert parity_failures(three([-0.3, 0.0, 0.0]), "x") == []
    # a report written before the interval was recorded is judged on the median itself
    old = {k: v for k, v in mixed.items() if k not in ("score_shift_ci95", "score_spread_low95")}
    assert any("scores are shifted" in f for f in parity_failures(old, "model_int8.tflite"))
    # hundreds of detections: a small shift past the allowance is refused (the interval is tight)
    gt3, sizes3, ref3 = make_set(300)
    c = compare(ref3, edit(ref3, lambda b, c, s: (b, c, s - 0.06)), gt3, sizes3, LM)
    assert c["score_shift_ci95"][1] < -MAX_SCORE_SHIFT and any("shifted" in f for f in parity_failures(c, "x")), c


def test_parity_line_reads_plainly():
    """The printed line: a count with its noun, and a drop that rounds to nothing reads +0.0, never -0.0."""
    from mask_od.export import parity_line

    c = {"images": 1, "found": 6, "ref_shown": 6, "pairs": 6, "score_shift": -0.0002, "map50_drop": -0.0004,
         "map50_drop_ci95": [-0.0004, 0.0123]}
    assert parity_line("model_int8.tflite", c) == ("checked model_int8.tflite on 1 image: 6 of 6 SavedModel detections "
                                                   "found, scores +0.000 (median), mAP@0.5 drop +0.0 points (95% interval "
                                                   "+0.0 to +1.2)")
    c |= {"images": 3, "ref_shown": 0, "pairs": 0, "map50_drop": 0.0251, "map50_drop_ci95": [None, None]}
    assert parity_line("f", c) == ("checked f on 3 images: no SavedModel detection to find, mAP@0.5 drop +2.5 points "
                                   "(no interval on fewer than 10 images)")


def test_map50_drop_is_not_judged_on_fewer_than_10_images():
    """CI: int8 refused for "50.0 points below ... on 1 image (95% interval 50.0 to 50.0)": a bootstrap of one image
    has no spread. Under 10 images mAP is not judged (the detection rules still are); from 10 on it is."""
    from mask_od.parity import compare, parity_failures

    for n in (1, 9, 10):
        gt, sizes, ref = make_set(n)
        worse = edit(ref[:1], BUGS["no detections"]) + ref[1:]  # image 0 loses every detection
        c = compare(ref, worse, gt, sizes, LM)
        failures = parity_failures(c, "model_int8.tflite", max_map50_drop=-1.0)  # any drop at all would be refused
        assert c["map50_drop"] > 0.01, (n, c["map50_drop"])
        if n < 10:
            assert c["map50_drop_ci95"] == [None, None] and not any("mAP@0.5 is" in f for f in failures), (n, failures)
        else:
            lo, hi = c["map50_drop_ci95"]
            assert lo is not None and lo <= c["map50_drop"] <= hi and any("mAP@0.5 is" in f for f in failures), (n, c)
    one = compare(ref[:1], edit(ref[:1], BUGS["no detections"]), gt[:1], sizes[:1], LM)
    assert any("agrees on only 0 of" in f for f in parity_failures(one, "model_int8.tflite"))  # the detections are judged


def test_box_iou_is_judged_by_its_bound_on_a_few_detections():
    """CI (stop 36): the notebook's tiny export (12 steps, checked on 2 photos) was refused for a median int8 box IoU
    of 0.73 over 2 matched detections. Two boxes cannot show that a file draws boxes elsewhere: the median IoU is
    refused when even its 95% upper bound is short (from 5 pairs on: all of them under the allowance)."""
    from mask_od.parity import MIN_BOX_IOU, compare, parity_failures

    def pairs(n, iou=0.73):  # n faces; the file's boxes grown about the same centre to the given IoU
        y0 = np.arange(n, dtype=np.float32)[:, None] * 0.1
        ref_b = np.concatenate([y0, y0 * 0 + 0.05, y0 + 0.08, y0 * 0 + 0.12], 1)
        s = (1 / iou) ** 0.5
        cy, cx, h, w = (ref_b[:, 0] + ref_b[:, 2]) / 2, (ref_b[:, 1] + ref_b[:, 3]) / 2, 0.08 * s, 0.07 * s
        other_b = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1).astype(np.float32)
        one, sc = np.ones(n, np.int64), np.full(n, 0.8, np.float32)
        return compare([Detections.from_arrays(ref_b, one, sc, LM)], [Detections.from_arrays(other_b, one, sc, LM)],
                       [(ref_b, one)], [(300, 400)], LM)

    two = pairs(2)
    assert two["pairs"] == 2 and two["box_iou"] < MIN_BOX_IOU and two["box_iou_high95"] is None, two
    assert parity_failures(two, "model_int8.tflite") == []
    eight = pairs(8)
    failures = parity_failures(eight, "model_int8.tflite")
    assert any("median IoU of 0.73 over 8 matched detections" in f and "95% upper bound 0.73" in f for f in failures), failures
    assert parity_failures(pairs(8, iou=0.95), "model_int8.tflite") == []
    old = {k: v for k, v in two.items() if k != "box_iou_high95"}  # a report written before the bound: the median
    assert any("median IoU of 0.73 over 2" in f and "upper bound" not in f for f in parity_failures(old, "model_int8.tflite"))

    def grown(b, c, s):  # an export bug only this rule sees: boxes 1.25x as tall and wide about the same centre
        centre, half = (b[:, :2] + b[:, 2:]) / 2, 0.625 * (b[:, 2:] - b[:, :2])
        return np.concatenate([centre - half, centre + half], 1).astype(np.float32), c, s

    for n_images in (30, 300):  # refused on a real check set, small or large
        gt, sizes, ref = make_set(n_images)
        c = compare(ref, edit(ref, grown), gt, sizes, LM)
        assert any("median IoU of 0.64" in f for f in parity_failures(c, "model_int8.tflite")), c
