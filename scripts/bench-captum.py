#!/usr/bin/env python3
"""DeepSHAP side by side with Captum's DeepLiftShap: the same model (rebuilt in
PyTorch from a libfer checkpoint), the same PublicTest faces, the same
references (the first --references Training faces, given to fer-explain as a
background file), all seven classes. Prints each side's seconds per image and
how far libfer's maps are from Captum's.

  /usr/bin/python3 scripts/bench-captum.py --model experiments/fer2013_paper_cnn_long/best.pt \
      --data ../shared/data/fer2013/fer2013.csv.gz --images 5 --threads 2 --work /tmp/captum-bench

Needs Python PyTorch (python3-torch), numpy and Captum (`pip install captum`, or
--captum-path DIR with a copy of its source); fer-explain built in build/bin.
"""
import csv
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch

from libfer_model import benchmark_arguments, face, fer2013_rows, import_path, load_model


def write_rows(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["emotion", "pixels", "Usage"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def captum_maps(model, faces, references, threads):
    from captum.attr import DeepLiftShap
    torch.set_num_threads(threads)
    explainer = DeepLiftShap(model)
    baselines = torch.tensor(np.stack(references), dtype=torch.float32).unsqueeze(1)
    maps, started = [], time.perf_counter()
    for image in faces:
        x = torch.tensor(image, dtype=torch.float32).view(1, 1, 48, 48)
        maps.append(np.stack([explainer.attribute(x, baselines=baselines, target=c)[0, 0].detach().numpy()
                              for c in range(7)]))
    return maps, (time.perf_counter() - started) / len(faces)


def libfer_maps(fer_explain, model_path, work, threads, count):
    out = os.path.join(work, "fer")
    command = [fer_explain, "--model", model_path, "--input", os.path.join(work, "faces.csv"), "--split", "val",
               "--background", os.path.join(work, "background.csv"), "--method", "shap", "--classes", "all",
               "--save-raw", "--no-faithfulness", "--threads", str(threads), "--out", out]
    log = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds = float(re.search(r"in ([0-9.]+) s", log).group(1))
    folders = sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)))
    if len(folders) != count:
        sys.exit(f"error: fer-explain wrote {len(folders)} explanations, expected {count}\n{log}")
    return [np.load(os.path.join(out, d, "shap.npy")) for d in folders], seconds / count


def main():
    p = benchmark_arguments(__doc__, "captum")
    p.add_argument("--references", type=int, default=100)
    p.add_argument("--work", default="/tmp/captum-bench", help="scratch folder (faces and references as CSV, maps)")
    p.add_argument("--fer-explain", default="build/bin/fer-explain")
    args = p.parse_args()
    import_path(args.captum_path)

    os.makedirs(args.work, exist_ok=True)
    faces_rows = fer2013_rows(args.data, "PublicTest", args.images)
    reference_rows = fer2013_rows(args.data, "Training", args.references)
    write_rows(os.path.join(args.work, "faces.csv"), faces_rows)
    write_rows(os.path.join(args.work, "background.csv"), reference_rows)

    ours, our_seconds = libfer_maps(args.fer_explain, args.model, args.work, args.threads, len(faces_rows))
    theirs, their_seconds = captum_maps(load_model(args.model), [face(r) for r in faces_rows],
                                        [face(r) for r in reference_rows], args.threads)
    worst = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in zip(ours, theirs))
    print(f"{len(faces_rows)} images x 7 classes, {len(reference_rows)} references, {args.threads} threads")
    print(f"captum DeepLiftShap: {their_seconds:.3f} s/img")
    print(f"libfer fer-explain:  {our_seconds:.3f} s/img (all files written, start-up included)  "
          f"x{their_seconds / our_seconds:.1f}")
    print(f"largest difference: {worst:.2e} of the largest |attribution| (per image)")


if __name__ == "__main__":
    main()
