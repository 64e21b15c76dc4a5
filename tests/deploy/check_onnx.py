"""Checks an exported ONNX file with the onnx package alone (Debian's python3-onnx).

check_onnx.py MODEL.onnx CLASSES OUTPUT_NAME: the full checker (with shape
inference) accepts it, the input is "image" [N,1,48,48] float, shape inference
gives the output OUTPUT_NAME [N,CLASSES], and metadata_props' libfer_meta
names CLASSES classes. Exits non-zero with the reason otherwise.
"""
import json
import sys

import onnx
from onnx import shape_inference


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main(path, classes, output_name):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    graph = shape_inference.infer_shapes(model, strict_mode=True).graph
    assert [i.name for i in graph.input] == ["image"], [i.name for i in graph.input]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(graph.input[0]) == ["N", 1, 48, 48], dims(graph.input[0])
    assert [o.name for o in graph.output] == [output_name], [o.name for o in graph.output]
    assert dims(graph.output[0]) == ["N", classes], dims(graph.output[0])
    meta = json.loads({p.key: p.value for p in model.metadata_props}["libfer_meta"])
    assert len(meta["class_names"]) == classes, meta["class_names"]
    assert meta["export"]["output"] == output_name, meta["export"]
    print("onnx checker ok:", path, "opset", model.opset_import[0].version, "nodes", len(graph.node))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
