"""Training data for the person / PPE detector: converters, taxonomy, de-duplication, splits.

``smartsite datasets build --out DIR`` turns the labelled photos in ``../shared/datasets/``
into one set in the ultralytics layout (see :mod:`datasets.build`).
"""
