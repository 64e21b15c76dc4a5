"""Reference attribution maps in Python PyTorch, for AttributionPython.* in
tests/explain/test_attribution.cpp: each method written out from its
definition (Simonyan et al.; Sundararajan et al. with Gauss-Legendre nodes;
Selvaraju et al.; Chattopadhay et al. as pytorch-grad-cam computes it; Draelos
and Carin; Zeiler and Fergus' occlusion averaged over the windows covering a
pixel, as Captum's Occlusion does), on the checkpoint rebuilt as a plain
nn.Sequential by scripts/libfer_model.py.

usage: attribution_reference.py SCRIPTS_DIR CHECKPOINT IMAGES.f32 N CLASSES(comma) CAM_LAYER IG_STEPS PATCH STRIDE FILL OUT_DIR
Writes OUT_DIR/<method>.f32: float32 [N,48,48], C order."""
import sys

import numpy as np
import torch
import torch.nn.functional as F


def input_gradient(model, x, classes):
    x = x.clone().requires_grad_(True)
    model(x).gather(1, classes[:, None]).sum().backward()
    return x.grad


def integrated_gradients(model, x, classes, steps):
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
    total = torch.zeros_like(x)
    for node, weight in zip(nodes, weights):
        total += float(weight / 2) * input_gradient(model, float((node + 1) / 2) * x, classes)  # black baseline
    return (x * total).sum(1)


def cam(model, x, classes, layer, kind):
    store = {}
    module = getattr(model, layer)
    handle = module.register_forward_hook(lambda m, i, out: store.update(a=out))
    out = model(x)
    handle.remove()
    a = store["a"]
    (g,) = torch.autograd.grad(out.gather(1, classes[:, None]).sum(), a)
    a = a.detach()
    if kind == "gradcam":
        weighted = g.mean((2, 3), keepdim=True) * a
    elif kind == "hirescam":
        weighted = g * a
    else:  # gradcam++
        alpha = g ** 2 / (2 * g ** 2 + a.sum((2, 3), keepdim=True) * g ** 3 + 1e-7)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        weighted = (alpha * F.relu(g)).sum((2, 3), keepdim=True) * a
    maps = F.relu(weighted.sum(1, keepdim=True))
    return F.interpolate(maps, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def window_starts(side, patch, stride):
    starts = list(range(0, side - patch + 1, stride))
    if not starts or starts[-1] + patch < side:
        starts.append(max(0, side - patch))
    return starts


def occlusion(model, x, classes, patch, stride, fill):
    with torch.no_grad():
        full = model(x).gather(1, classes[:, None])[:, 0]
        total = torch.zeros(x.shape[0], x.shape[2], x.shape[3])
        covered = torch.zeros(x.shape[2], x.shape[3])
        for top in window_starts(x.shape[2], patch, stride):
            for left in window_starts(x.shape[3], patch, stride):
                occluded = x.clone()
                occluded[:, :, top:top + patch, left:left + patch] = fill
                drop = full - model(occluded).gather(1, classes[:, None])[:, 0]
                total[:, top:top + patch, left:left + patch] += drop[:, None, None]
                covered[top:top + patch, left:left + patch] += 1
    return total / covered


def main(scripts_dir, checkpoint, images, n, classes, layer, ig_steps, patch, stride, fill, out_dir):
    sys.path.insert(0, scripts_dir)
    from libfer_model import load_model

    torch.set_num_threads(1)
    model = load_model(checkpoint)
    x = torch.from_numpy(np.fromfile(images, dtype="<f4").reshape(int(n), 1, 48, 48).copy())
    c = torch.tensor([int(k) for k in classes.split(",")])
    maps = {
        "saliency": input_gradient(model, x, c).abs().sum(1),
        "input_x_gradient": (x * input_gradient(model, x, c)).sum(1),
        "integrated_gradients": integrated_gradients(model, x, c, int(ig_steps)),
        "gradcam": cam(model, x, c, layer, "gradcam"),
        "gradcam++": cam(model, x, c, layer, "gradcam++"),
        "hirescam": cam(model, x, c, layer, "hirescam"),
        "occlusion": occlusion(model, x, c, int(patch), int(stride), float(fill)),
    }
    for name, m in maps.items():
        m.detach().numpy().astype("<f4").tofile(f"{out_dir}/{name}.f32")


if __name__ == "__main__":
    main(*sys.argv[1:])
