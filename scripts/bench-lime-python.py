#!/usr/bin/env python3
"""Times the lime library's LimeImageExplainer on a libfer checkpoint, for a
side-by-side comparison with `fer-bench` / `fer-explain --method lime`: the
same model (rebuilt in PyTorch from the checkpoint's weights), the same
PublicTest faces, samples, batch size and threads.

  /usr/bin/python3 scripts/bench-lime-python.py --model experiments/fer2013_paper_cnn_long/best.pt \
      --data ../shared/data/fer2013/fer2013.csv.gz --images 8 --threads 2 [--segmentation slic|quickshift]

Needs Python PyTorch (Debian: python3-torch), scikit-image, scikit-learn, tqdm
(python3-skimage python3-sklearn python3-tqdm) and the lime package
(`pip install lime`, or --lime-path DIR with a copy of its source).
"""
import argparse
from collections import OrderedDict
import csv
import gzip
import json
import sys
import time

import numpy as np
import torch
from torch import nn


def paper_cnn(meta):
    """The paper CNN as libfer builds it (libfer/src/model.cpp), named like its state_dict."""
    m = meta["model"]
    layers, channels, side = [], m["in_channels"], m["input_size"]
    for b, filters in enumerate(m["filters"], start=1):
        for i in (1, 2):
            layers += [(f"block{b}_conv_{i}", nn.Conv2d(channels, filters, 3, padding=1)),
                       (f"block{b}_relu_{i}", nn.ReLU()),
                       (f"block{b}_bn_{i}", nn.BatchNorm2d(filters))]
            channels = filters
        layers += [(f"block{b}_pool", nn.MaxPool2d(2)), (f"block{b}_dropout", nn.Dropout())]
        side //= 2
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(channels * side * side, m["dense_units"])),
               ("fc1_relu", nn.ReLU()), ("fc1_bn", nn.BatchNorm1d(m["dense_units"])), ("fc1_dropout", nn.Dropout()),
               ("fc2", nn.Linear(m["dense_units"], m["num_classes"]))]
    return nn.Sequential(OrderedDict(layers))


def load_model(path):
    scripted = torch.jit.load(path, map_location="cpu")
    meta = json.loads(scripted.libfer_meta)
    if meta["model"]["architecture"] != "paper_cnn":
        sys.exit(f"error: {path}: only paper_cnn is rebuilt here, not {meta['model']['architecture']}")
    model = paper_cnn(meta)
    model.load_state_dict(scripted.state_dict())
    return model.eval()


def public_test_faces(path, count):
    faces = []
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        for row in csv.DictReader(f):
            if row["Usage"] == "PublicTest":
                faces.append(np.array(row["pixels"].split(), dtype=np.float64).reshape(48, 48) / 255.0)
                if len(faces) == count:
                    break
    return faces


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128, help="lime's default is 10; libfer uses 128")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--segmentation", choices=["slic", "quickshift"], default="slic")
    p.add_argument("--lime-path", help="directory holding the lime package (a source checkout)")
    args = p.parse_args()
    if args.lime_path:
        sys.path.insert(0, args.lime_path)
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    torch.set_num_threads(args.threads)
    model = load_model(args.model)

    def classify(rgb):  # lime passes [n,48,48,3]; the model reads one grey channel
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(rgb[..., 0], dtype=np.float32)).unsqueeze(1)
            return torch.softmax(model(x), 1).numpy()

    if args.segmentation == "slic":  # about libfer's SLICO superpixel count (~45 on a face)
        segment = SegmentationAlgorithm("slic", n_segments=60, compactness=10, sigma=0.5, start_label=0)
    else:  # lime's default
        segment = SegmentationAlgorithm("quickshift", kernel_size=4, max_dist=200, ratio=0.2)
    explainer = lime_image.LimeImageExplainer()
    faces = public_test_faces(args.data, args.images)
    classify(np.stack([np.dstack([faces[0]] * 3)] * 4))  # warm-up
    segments, started = [], time.perf_counter()
    for i, face in enumerate(faces):
        e = explainer.explain_instance(face, classify, top_labels=1, hide_color=None, num_samples=args.samples,
                                       batch_size=args.batch_size, segmentation_fn=segment, random_seed=i,
                                       progress_bar=False)
        segments.append(len(np.unique(e.segments)))
    seconds = (time.perf_counter() - started) / len(faces)
    print(f"lime-python {args.segmentation} samples={args.samples} batch={args.batch_size} threads={args.threads}: "
          f"{seconds:.3f} s/img over {len(faces)} images (segments: mean {np.mean(segments):.1f})")


if __name__ == "__main__":
    main()
