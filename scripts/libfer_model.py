"""A libfer checkpoint as a plain PyTorch module, for side-by-side benchmarks
with Python libraries (scripts/bench-lime-python.py, scripts/bench-captum.py).
The checkpoint stores weights and metadata (torch.jit.load reads them); the
network is rebuilt here as libfer builds it (libfer/src/models/model.cpp)."""
import argparse
import csv
import gzip
import json
import sys
from collections import OrderedDict

import numpy as np
import torch
from torch import nn


def paper_cnn(meta):
    """The paper CNN, named like its state_dict."""
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
    """The checkpoint's network in eval mode (input: [N,1,48,48] in [0,1]; output: logits)."""
    scripted = torch.jit.load(path, map_location="cpu")
    meta = json.loads(scripted.libfer_meta)
    if meta["model"]["architecture"] != "paper_cnn":
        sys.exit(f"error: {path}: only paper_cnn is rebuilt here, not {meta['model']['architecture']}")
    model = paper_cnn(meta)
    model.load_state_dict(scripted.state_dict())
    return model.eval()


def fer2013_rows(path, usage, count):
    """The first `count` rows of one split (Training, PublicTest, PrivateTest) of a FER-2013 CSV (.gz too)."""
    rows = []
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        for row in csv.DictReader(f):
            if row["Usage"] == usage:
                rows.append(row)
                if len(rows) == count:
                    break
    return rows


def face(row):
    """A CSV row's face as float64 [48,48] in [0,1]."""
    return np.array(row["pixels"].split(), dtype=np.float64).reshape(48, 48) / 255.0


def benchmark_arguments(description, library):
    """The options every side-by-side benchmark takes; `library` names the Python package compared."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="libfer checkpoint (.pt)")
    p.add_argument("--data", required=True, help="FER-2013 CSV: faces from PublicTest")
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(f"--{library}-path", help=f"directory holding the {library} package (a source checkout)")
    return p


def import_path(directory):
    """Makes a package in `directory` (a source checkout) importable first."""
    if directory:
        sys.path.insert(0, directory)
