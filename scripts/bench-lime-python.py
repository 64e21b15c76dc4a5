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
import sys
import time

import numpy as np
import torch

from libfer_model import benchmark_arguments, face, fer2013_rows, import_path, load_model


def main():
    p = benchmark_arguments(__doc__, "lime")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128, help="lime's default is 10; libfer uses 128")
    p.add_argument("--segmentation", choices=["slic", "quickshift"], default="slic")
    args = p.parse_args()
    import_path(args.lime_path)
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
    faces = [face(r) for r in fer2013_rows(args.data, "PublicTest", args.images)]
    classify(np.stack([np.dstack([faces[0]] * 3)] * 4))  # warm-up
    segments, started = [], time.perf_counter()
    for i, image in enumerate(faces):
        e = explainer.explain_instance(image, classify, top_labels=1, hide_color=None, num_samples=args.samples,
                                       batch_size=args.batch_size, segmentation_fn=segment, random_seed=i,
                                       progress_bar=False)
        segments.append(len(np.unique(e.segments)))
    seconds = (time.perf_counter() - started) / len(faces)
    print(f"lime-python {args.segmentation} samples={args.samples} batch={args.batch_size} threads={args.threads}: "
          f"{seconds:.3f} s/img over {len(faces)} images (segments: mean {np.mean(segments):.1f})")


if __name__ == "__main__":
    main()
