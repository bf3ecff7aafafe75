"""Writes tf_ssd_const.onnx: the output signature of a TensorFlow Object Detection API SSD
(``image_tensor`` uint8 NHWC in; ``num_detections``, ``detection_scores``, ``detection_boxes``
(normalised ymin, xmin, ymax, xmax), ``detection_classes`` out) with fixed detections, for
tests/test_person_stage.py. Needs the ``onnx`` package (the training venv has it):

    /work/venv-train/bin/python tests/data/make_tf_ssd.py
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).with_name("tf_ssd_const.onnx")
FIXED = {
    "num_detections:0": np.array([3], np.float32),
    "detection_scores:0": np.array([[0.9, 0.8, 0.3, 0.0]], np.float32),
    "detection_boxes:0": np.array(
        [[[0.1, 0.2, 0.5, 0.4], [0.5, 0.5, 1.0, 0.75], [0.0, 0.0, 0.2, 0.2], [0, 0, 0, 0]]],
        np.float32,
    ),
    "detection_classes:0": np.array([[1, 3, 1, 0]], np.float32),  # 1 = person
}
shape = helper.make_node("Shape", ["image_tensor:0"], ["shape"])  # uses the input
nodes = [shape] + [
    helper.make_node("Constant", [], [name], value=numpy_helper.from_array(v, name + "_value"))
    for name, v in FIXED.items()
]
graph = helper.make_graph(
    nodes,
    "tf_ssd_const",
    [helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, [1, None, None, 3])],
    [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape)) for n, v in FIXED.items()]
    + [helper.make_tensor_value_info("shape", TensorProto.INT64, [4])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, OUT)
print(OUT, OUT.stat().st_size, "bytes")
