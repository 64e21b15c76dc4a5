"""Runs an exported TorchScript file in Python PyTorch without libfer.

check_torchscript.py MODEL.pt INPUT.f32 EXPECTED.f32 N CLASSES: forward() of
the [N,1,48,48] float32 input equals the [N,CLASSES] float32 probabilities
libfer computed (max |diff| < 1e-5), and the libfer_export.json extra file
describes the output. Exits non-zero with the reason otherwise.
"""
import json
import sys

import torch


def main(path, input_path, expected_path, n, classes):
    extra = {"libfer_export.json": ""}
    module = torch.jit.load(path, _extra_files=extra)
    meta = json.loads(extra["libfer_export.json"])
    assert meta["export"]["output"] == "probabilities", meta["export"]
    x = torch.from_file(input_path, size=n * 48 * 48, dtype=torch.float32).reshape(n, 1, 48, 48)
    expected = torch.from_file(expected_path, size=n * classes, dtype=torch.float32).reshape(n, classes)
    with torch.no_grad():
        got = module(x)
    diff = (got - expected).abs().max().item()
    assert diff < 1e-5, f"max |diff| {diff}"
    print("torchscript ok: max |diff|", diff)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
