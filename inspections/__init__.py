"""Random spot checks (双随机一公开): risk-weighted draws of projects and inspectors that can be
recomputed from their seed and snapshot (``draw``), and the inspections that follow, with
findings, photos and rectification orders; confirmed findings feed credit (``records``)."""
