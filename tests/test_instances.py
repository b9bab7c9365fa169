"""3D linking of frame-indexed boxes into lesion instances."""

from voxqa.boxes.instances import LINK_CONTAINMENT, LINK_IOU, link_instances, overlaps


def test_adjacent_overlapping_boxes_form_one_instance():
    boxes = [(10, (0, 0, 10, 10)), (11, (1, 1, 11, 11)), (12, (2, 2, 12, 12))]
    assert link_instances(boxes) == [0, 0, 0]


def test_gap_of_one_frame_splits_instances():
    boxes = [(10, (0, 0, 10, 10)), (12, (0, 0, 10, 10))]
    assert link_instances(boxes) == [0, 1]


def test_same_frame_boxes_are_separate_unless_bridged():
    two = [(5, (0, 0, 10, 10)), (5, (20, 20, 30, 30))]
    assert link_instances(two) == [0, 1]
    # a box on the next frame overlapping both joins them (a lesion that splits)
    bridged = two + [(6, (0, 0, 30, 30))]
    assert len(set(link_instances(bridged))) == 1


def test_far_apart_boxes_on_adjacent_frames_are_two_lesions():
    boxes = [(3, (0, 0, 10, 10)), (4, (50, 50, 60, 60))]
    assert link_instances(boxes) == [0, 1]


def test_thresholds():
    big, small_inside = (0, 0, 100, 100), (10, 10, 20, 20)  # IoU 0.01, containment 1.0
    assert overlaps(big, small_inside)
    a, b = (0, 0, 10, 10), (9, 9, 19, 19)  # 1 pixel shared: IoU ~0.005, containment 0.01
    assert not overlaps(a, b)
    assert LINK_IOU == 0.1 and LINK_CONTAINMENT == 0.5


def test_ids_ordered_by_first_frame_and_independent_of_input_order():
    boxes = [(20, (0, 0, 5, 5)), (2, (0, 0, 5, 5)), (3, (0, 0, 5, 5))]
    ids = link_instances(boxes)
    assert ids == [1, 0, 0]
    assert link_instances(list(reversed(boxes))) == [0, 0, 1]
