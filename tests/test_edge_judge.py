"""The edge rules as pure logic: tracked people in, verdicts out (no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import supervision as sv

from edge.config import RuleSettings, ZoneConfig
from edge.judge import ATTENDANCE, LOITERING, FaceObs, Judge
from edge.tracking import PersonTracker, associate, proxies
from smartsite.protocol.messages import Rule, Severity

SIZE = (640, 480)
NAN = math.nan


def people(*rows: tuple) -> sv.Detections:
    """rows: (track id, (x1, y1, x2, y2), hard_hat, vest[, proxy])."""
    if not rows:
        d = sv.Detections.empty()
        d.tracker_id = np.zeros(0, dtype=int)
        for k in ("hard_hat", "vest", "proxy"):
            d.data[k] = np.zeros(0)
        return d
    return sv.Detections(
        xyxy=np.array([r[1] for r in rows], np.float32),
        confidence=np.full(len(rows), 0.9, np.float32),
        class_id=np.zeros(len(rows), int),
        tracker_id=np.array([r[0] for r in rows], int),
        data={
            "hard_hat": np.array([r[2] for r in rows], np.float32),
            "vest": np.array([r[3] for r in rows], np.float32),
            "proxy": np.array([r[4] if len(r) > 4 else False for r in rows], bool),
        },
    )


def rules(**kw) -> RuleSettings:
    base = {"k": 3, "n": 5, "cooldown_s": 60.0}
    return RuleSettings(**{**base, **kw})


STANDING = (100.0, 100.0, 160.0, 300.0)


def run(judge: Judge, frames, t0: float = 0.0, dt: float = 0.2, faces=None):
    out = []
    for i, d in enumerate(frames):
        out += judge.update(t0 + i * dt, SIZE, d, (faces or {}).get(i))
    return out


def test_k_of_n_needs_k_agreeing_frames() -> None:
    j = Judge(rules(enabled=["no_hard_hat"]))
    # two frames without a hard hat, then not visible: 2 of 4 < 3, nothing
    seq = [people((1, STANDING, 0.0, NAN))] * 2 + [people((1, STANDING, NAN, NAN))] * 2
    assert run(j, seq) == []
    # a third bare-head frame within the window of 5 fires
    v = j.update(2.0, SIZE, people((1, STANDING, 0.0, NAN)))
    assert [x.rule for x in v] == [Rule.NO_HARD_HAT]
    assert v[0].severity is Severity.ALARM and v[0].track_id == 1


def test_one_alert_per_person_across_many_frames() -> None:
    j = Judge(rules(enabled=["no_hard_hat"]))
    seq = [people((1, STANDING, 0.0, NAN), (2, (300, 100, 360, 300), 1.0, NAN))] * 200
    v = run(j, seq)
    assert [(x.rule, x.track_id) for x in v] == [(Rule.NO_HARD_HAT, 1)]


def test_cooldown_then_fires_again() -> None:
    j = Judge(rules(enabled=["no_hard_hat"], cooldown_s=10))
    v = run(j, [people((1, STANDING, 0.0, NAN))] * 100, dt=0.25)  # 25 s
    times = [x.ts for x in v]
    assert len(v) == 3 and times[1] - times[0] >= 10 and times[2] - times[1] >= 10


def test_track_switch_is_the_same_person() -> None:
    """The tracker loses the person and gives a new id at the same place: no second alert;
    another person elsewhere still alerts."""
    j = Judge(rules(enabled=["no_hard_hat"]))
    a = run(j, [people((1, STANDING, 0.0, NAN))] * 10)
    b = run(j, [people((7, (102, 102, 162, 302), 0.0, NAN))] * 10, t0=3.0)
    c = run(j, [people((8, (400, 100, 460, 300), 0.0, NAN))] * 10, t0=6.0)
    assert len(a) == 1 and b == [] and [x.track_id for x in c] == [8]


def test_ppe_required_only_in_zones_that_require_it() -> None:
    zone = ZoneConfig(
        id="deck",
        type="restricted",
        polygon=[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)],
        required_ppe=["hard_hat"],
        allowed_roles=["rigger"],
    )
    j = Judge(rules(enabled=["no_hard_hat"]), [zone])
    outside = people((1, STANDING, 0.0, NAN))
    inside = people((2, (400, 100, 460, 300), 0.0, NAN))
    assert run(j, [outside] * 10) == []
    v = run(j, [inside] * 10, t0=5)
    assert [(x.rule, x.zone_id) for x in v] == [(Rule.NO_HARD_HAT, "deck")]


def test_vest_everywhere_when_no_zone_requires_it() -> None:
    j = Judge(rules(enabled=["no_vest"]))
    v = run(j, [people((1, STANDING, NAN, 0.0))] * 5)
    assert [x.rule for x in v] == [Rule.NO_VEST] and v[0].severity is Severity.WARNING


@pytest.mark.parametrize(
    ("box", "inside"),
    [
        ((100, 100, 160, 300), False),  # feet at y=300 < zone top 336: head-level overlap only
        ((100, 200, 160, 400), True),  # bottom-centre (130, 400) in the zone
        ((0, 150, 60, 360), False),  # bottom-centre x=30 left of the zone
        ((90, 280, 150, 480), True),  # cut by the frame's bottom edge, feet still in
    ],
)
def test_zone_membership_is_the_bottom_centre(box, inside) -> None:
    zone = ZoneConfig(
        id="pit", type="danger", polygon=[(0.1, 0.7), (0.9, 0.7), (0.9, 1.0), (0.1, 1.0)]
    )
    j = Judge(rules(enabled=["zone_intrusion"]), [zone])
    v = run(j, [people((1, box, NAN, NAN))] * 5)
    assert [(x.rule, x.zone_id) for x in v] == ([(Rule.ZONE_INTRUSION, "pit")] if inside else [])
    if inside:
        assert v[0].severity is Severity.ALARM


def test_allowed_role_enters_once_identity_is_known() -> None:
    zone = ZoneConfig(
        id="crane",
        type="restricted",
        polygon=[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
        allowed_roles=["rigger"],
    )
    j = Judge(rules(enabled=["zone_intrusion"], k=5, n=5), [zone], roles={"w1": "rigger"})
    j.gallery_size = 1
    face = FaceObs("w1", 0.7, 900.0, 0.9)
    v = run(j, [people((1, STANDING, NAN, NAN))] * 8, faces={i: {1: face} for i in range(8)})
    assert [x.rule for x in v] == [ATTENDANCE]
    j2 = Judge(rules(enabled=["zone_intrusion"]), [zone], roles={"w1": "rigger"})
    v2 = run(j2, [people((1, STANDING, NAN, NAN))] * 8)
    assert [x.rule for x in v2] == [Rule.ZONE_INTRUSION] and v2[0].severity is Severity.WARNING


def test_loitering_after_the_zone_limit() -> None:
    zone = ZoneConfig(
        id="pit",
        type="danger",
        polygon=[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
        loiter_s=5,
    )
    j = Judge(rules(enabled=["zone_intrusion"]), [zone])
    v = run(j, [people((1, STANDING, NAN, NAN))] * 40, dt=0.25)  # 10 s inside
    kinds = [(x.rule, round(x.ts, 2)) for x in v]
    assert kinds[0] == (Rule.ZONE_INTRUSION, 0.5)
    assert [k for k, _ in kinds] == [Rule.ZONE_INTRUSION, LOITERING]
    assert 5.0 < kinds[1][1] <= 5.5
    assert v[1].protocol_rule is Rule.ZONE_INTRUSION and "loitering" in v[1].detail


def test_loitering_clock_restarts_after_leaving() -> None:
    zone = ZoneConfig(
        id="pit",
        type="danger",
        polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)],
        loiter_s=5,
    )
    j = Judge(rules(enabled=["zone_intrusion"], cooldown_s=1000), [zone])
    inside, outside = people((1, STANDING, NAN, NAN)), people((1, (400, 100, 460, 300), NAN, NAN))
    seq = ([inside] * 12 + [outside] * 8) * 3  # 3 s in, 2 s out, three times
    v = run(j, seq, dt=0.25)
    assert LOITERING not in [x.rule for x in v]


def test_fall_by_aspect_and_by_a_sudden_drop() -> None:
    j = Judge(rules(enabled=["fall"]))
    lying = (100.0, 250.0, 300.0, 320.0)  # 200 wide, 70 tall
    v = run(j, [people((1, STANDING, NAN, NAN))] * 5 + [people((1, lying, NAN, NAN))] * 5)
    assert [x.rule for x in v] == [Rule.FALL] and v[0].severity is Severity.ALARM
    # a drop: the top falls by half the height within a second and stays low, box still narrow
    j2 = Judge(rules(enabled=["fall"]))
    low = (100.0, 220.0, 190.0, 320.0)  # 90 wide, 100 tall: aspect 0.9 < 1.3
    v2 = run(j2, [people((1, STANDING, NAN, NAN))] * 5 + [people((1, low, NAN, NAN))] * 5)
    assert [x.rule for x in v2] == [Rule.FALL]


def test_no_fall_for_proxies_or_boxes_cut_by_the_frame() -> None:
    j = Judge(rules(enabled=["fall"]))
    cut = (0.0, 380.0, 300.0, 480.0)  # wide, but cut by the bottom edge
    proxy = (100.0, 250.0, 300.0, 320.0)
    v = run(j, [people((1, cut, NAN, NAN), (2, proxy, 0.0, NAN, True))] * 10)
    assert v == []


def test_crowding_per_zone_with_cooldown() -> None:
    zone = ZoneConfig(
        id="lift",
        type="restricted",
        polygon=[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
        crowd_limit=2,
    )
    j = Judge(rules(enabled=["crowding"]), [zone])
    three = people(
        (1, STANDING, NAN, NAN),
        (2, (200, 100, 260, 300), NAN, NAN),
        (3, (300, 100, 360, 300), NAN, NAN),
    )
    two = people((1, STANDING, NAN, NAN), (2, (200, 100, 260, 300), NAN, NAN))
    assert run(j, [two] * 10) == []
    v = run(j, [three] * 50, t0=5)
    assert [(x.rule, x.zone_id, x.track_ids) for x in v] == [(Rule.CROWDING, "lift", (1, 2, 3))]


def test_face_vote_weights_area_and_score() -> None:
    """Two small, poor faces say w2; three large, clear faces say w1: w1 wins."""
    j = Judge(rules(enabled=["unknown_person"]), gallery_size=2)
    big = FaceObs("w1", 0.6, 4000.0, 0.95)
    small = FaceObs("w2", 0.4, 400.0, 0.6)
    faces = {0: {1: small}, 1: {1: small}, 2: {1: big}, 3: {1: big}, 4: {1: big}}
    v = run(j, [people((1, STANDING, NAN, NAN))] * 8, faces=faces)
    assert [(x.rule, x.worker_id) for x in v] == [(ATTENDANCE, "w1")]
    assert v[0].similarity == pytest.approx(0.6)


def test_one_frame_does_not_decide_identity() -> None:
    j = Judge(rules(enabled=["unknown_person"]), gallery_size=2)
    v = run(j, [people((1, STANDING, NAN, NAN))] * 8, faces={0: {1: FaceObs("w1", 0.9, 5e3, 1)}})
    assert v == [] and j.identity(1) is None


def test_unknown_person_once_per_track_and_only_with_a_gallery() -> None:
    stranger = FaceObs(None, 0.1, 3000.0, 0.9)
    faces = {i: {1: stranger} for i in range(20)}
    j = Judge(rules(enabled=["unknown_person"]), gallery_size=3)
    v = run(j, [people((1, STANDING, NAN, NAN))] * 20, faces=faces)
    assert [x.rule for x in v] == [Rule.UNKNOWN_PERSON]
    empty = Judge(rules(enabled=["unknown_person"]), gallery_size=0)
    assert run(empty, [people((1, STANDING, NAN, NAN))] * 20, faces=faces) == []


def test_disabled_rules_stay_quiet() -> None:
    j = Judge(rules(enabled=["no_vest"]))
    assert run(j, [people((1, STANDING, 0.0, NAN))] * 20) == []


# --- PPE association and proxies ---------------------------------------------------------------


def ppe(*rows: tuple[str, tuple, float]) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array([r[1] for r in rows], np.float32).reshape(-1, 4),
        confidence=np.array([r[2] for r in rows], np.float32),
        class_id=np.zeros(len(rows), int),
        data={"class_name": np.array([r[0] for r in rows], dtype=object)},
    )


def test_ppe_goes_to_the_right_person() -> None:
    persons = np.array([[100, 100, 160, 300], [150, 120, 230, 330]], np.float32)
    boxes = ppe(
        ("hard_hat", (115, 95, 145, 120), 0.9),  # above person 0's head (sticks out)
        ("head", (175, 125, 205, 150), 0.8),  # person 1's head
        ("vest", (105, 150, 155, 220), 0.7),  # person 0's torso
        ("no_vest", (160, 170, 225, 240), 0.6),  # person 1's torso
        ("head", (400, 100, 420, 120), 0.9),  # nobody's
    )
    assert associate(persons, boxes).tolist() == [0, 1, 0, 1, -1]


def test_tracker_marks_ppe_and_makes_proxies_for_lone_heads() -> None:
    tr = PersonTracker(fps=10, min_score=0.4, ppe_score=0.35)
    det = sv.Detections(
        xyxy=np.array(
            [[100, 100, 160, 300], [115, 95, 145, 120], [400, 100, 420, 120]], np.float32
        ),
        confidence=np.array([0.9, 0.8, 0.9], np.float32),
        class_id=np.array([0, 2, 1]),
        data={"class_name": np.array(["person", "hard_hat", "head"], dtype=object)},
    )
    for _ in range(3):
        frame = tr.update(det, SIZE)
    p = frame.persons
    assert len(p) == 2 and sorted(p.data["proxy"].tolist()) == [False, True]
    real = int(np.nonzero(~p.data["proxy"])[0][0])
    lone = 1 - real
    assert p.data["hard_hat"][real] == 1.0 and p.data["hard_hat"][lone] == 0.0
    assert math.isnan(p.data["vest"][real])
    owners = frame.ppe.data["owner"].tolist()
    assert owners == [int(p.tracker_id[real]), int(p.tracker_id[lone])]


def test_a_person_too_unsure_to_track_leaves_its_head_to_a_proxy() -> None:
    """A bare head seen surely on a body the detector barely sees is still a person without
    a hard hat (before, the weak body claimed the head and was never tracked: no alert)."""
    tr = PersonTracker(fps=10, min_score=0.4, ppe_score=0.35)
    det = sv.Detections(
        xyxy=np.array([[100, 100, 160, 300], [115, 100, 145, 125]], np.float32),
        confidence=np.array([0.36, 0.8], np.float32),
        class_id=np.array([0, 1]),
        data={"class_name": np.array(["person", "head"], dtype=object)},
    )
    for _ in range(3):
        frame = tr.update(det, SIZE)
    p = frame.persons
    assert len(p) == 1 and p.data["proxy"].tolist() == [True]
    assert p.data["hard_hat"].tolist() == [0.0]


def test_proxies_merge_a_head_and_a_hat_on_one_spot() -> None:
    heads = ppe(("head", (100, 100, 130, 130), 0.6), ("hard_hat", (101, 99, 131, 131), 0.5))
    box = proxies(heads, SIZE)
    assert len(box) == 1
    x1, _, x2, y2 = box.xyxy[0]
    assert x1 == pytest.approx(70) and x2 == pytest.approx(160) and y2 == pytest.approx(310)
