"""PyTorch reference for EditKit's DragDiffusion motion supervision and point tracking.

    /usr/bin/python3 training/reference/drag_motion_reference.py

Writes tests/fixtures/drag/motion_reference.json from a small random feature map F [1, C, h, w] (seeded):

- the supervision map FF = F.interpolate(F, (H, W), mode="bilinear", align_corners=False), as the official
  `forward_unet_features` resizes the decoder feature to half the image resolution;
- the motion-supervision loss of the official `drag_diffusion_update` for several handle/target pairs on the
  (row, col) grid: per handle with |t - p| >= 2, the patch of radius r_m = 1 around p clipped to the grid
  ("boundary protection"), L_i = (2 r_m + 1)^2 * mean |FF(q + d) - sg(FF(q))|, d = (t - p) / |t - p|;
- dL/dF by autograd;
- point tracking: for each handle, the cell within r_p = 3 of its current position (clipped) whose FF1 vector is
  nearest in L1 to FF0 at the handle's initial position, first minimum in row-major order (torch.argmin).

Written from the paper and the official code's definitions, not copied. The shifted patch FF(q + d) is a
bilinear sample with indices clamped to the grid: inside the grid that is exactly the official
`interpolate_feature_patch` (checked below for the interior handle); at the bottom/right borders the official
slicing would come up a row or column short, and EditKit reads the border instead.
"""

import json
import os

import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "drag", "motion_reference.json")

C, h, w = 6, 5, 6
H, W = 10, 15
R_M, R_P = 1, 3


def sample_bilinear(ff: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """ff [1, C, H, W] at fractional (rows, cols) (same shape), bilinear, indices clamped to the grid."""
    _, _, hh, ww = ff.shape
    r0 = torch.floor(rows)
    c0 = torch.floor(cols)
    lr = rows - r0
    lc = cols - c0
    r0 = r0.long()
    c0 = c0.long()

    def at(r, c):
        return ff[0][:, r.clamp(0, hh - 1), c.clamp(0, ww - 1)]

    return (
        at(r0, c0) * (1 - lr) * (1 - lc)
        + at(r0 + 1, c0) * lr * (1 - lc)
        + at(r0, c0 + 1) * (1 - lr) * lc
        + at(r0 + 1, c0 + 1) * lr * lc
    )


def official_patch(feat, y1, y2, x1, x2):
    """The official interpolate_feature_patch's definition (valid where every index is inside the grid)."""
    x1f = torch.floor(x1).long()
    y1f = torch.floor(y1).long()
    dx = torch.floor(x2).long() - x1f
    dy = torch.floor(y2).long() - y1f
    wa = (x1f + 1 - x1) * (y1f + 1 - y1)
    wb = (x1f + 1 - x1) * (y1 - y1f)
    wc = (x1 - x1f) * (y1f + 1 - y1)
    wd = (x1 - x1f) * (y1 - y1f)
    ia = feat[:, :, y1f : y1f + dy, x1f : x1f + dx]
    ib = feat[:, :, y1f + 1 : y1f + 1 + dy, x1f : x1f + dx]
    ic = feat[:, :, y1f : y1f + dy, x1f + 1 : x1f + 1 + dx]
    id_ = feat[:, :, y1f + 1 : y1f + 1 + dy, x1f + 1 : x1f + 1 + dx]
    return ia * wa + ib * wb + ic * wc + id_ * wd


def motion_loss(feat, handles, targets, check_official_for=()):
    ff = F.interpolate(feat, (H, W), mode="bilinear", align_corners=False)
    loss = torch.zeros((), dtype=feat.dtype)
    per_handle = []
    for i, (p, t) in enumerate(zip(handles, targets)):
        p = torch.tensor(p, dtype=feat.dtype)
        t = torch.tensor(t, dtype=feat.dtype)
        if (t - p).norm() < 2.0:
            per_handle.append(0.0)
            continue
        d = (t - p) / (t - p).norm()
        r1, r2 = max(0, int(p[0]) - R_M), min(H, int(p[0]) + R_M + 1)
        c1, c2 = max(0, int(p[1]) - R_M), min(W, int(p[1]) + R_M + 1)
        f0 = ff[:, :, r1:r2, c1:c2].detach()
        rows = torch.arange(r1, r2, dtype=feat.dtype)[:, None].expand(r2 - r1, c2 - c1) + d[0]
        cols = torch.arange(c1, c2, dtype=feat.dtype)[None, :].expand(r2 - r1, c2 - c1) + d[1]
        f1 = sample_bilinear(ff, rows, cols)[None]
        if i in check_official_for:
            ref = official_patch(ff, r1 + d[0], r2 + d[0], c1 + d[1], c2 + d[1])
            assert torch.allclose(ref, f1, atol=1e-12), "clamped sampling differs from the official patch inside the grid"
        term = (2 * R_M + 1) ** 2 * F.l1_loss(f0, f1)
        per_handle.append(float(term))
        loss = loss + term
    return loss, per_handle


def track(ff0, ff1, handles, handles_init):
    out = []
    for p, p0 in zip(handles, handles_init):
        f0 = ff0[0, :, int(p0[0]), int(p0[1])]
        r1, r2 = max(0, int(p[0]) - R_P), min(H, int(p[0]) + R_P + 1)
        c1, c2 = max(0, int(p[1]) - R_P), min(W, int(p[1]) + R_P + 1)
        dist = (f0[:, None, None] - ff1[0, :, r1:r2, c1:c2]).abs().sum(dim=0)
        row, col = divmod(int(dist.argmin()), dist.shape[-1])
        out.append([r1 + row, c1 + col])
    return out


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    feat = torch.randn(1, C, h, w, dtype=torch.float64, requires_grad=True)
    # (row, col) on the H x W grid: interior; top-right corner (clipped patch, shifted patch past the border);
    # near the bottom edge moving down-left (the shifted patch reads past the last row); within 2 cells of its
    # target (skipped).
    handles = [[4, 5], [0, 14], [8, 3], [6, 8]]
    targets = [[8, 11], [5, 10], [9, 0], [7, 9]]
    loss, per_handle = motion_loss(feat, handles, targets, check_official_for=(0,))
    (grad,) = torch.autograd.grad(loss, feat)

    # Tracking: the current map is the initial one shifted by one raw cell (two grid cells down/right) plus noise.
    gen = torch.Generator().manual_seed(1)
    feat1 = torch.roll(feat.detach(), shifts=(1, 1), dims=(2, 3)) + 0.05 * torch.randn(1, C, h, w, generator=gen, dtype=torch.float64)
    ff0 = F.interpolate(feat.detach(), (H, W), mode="bilinear", align_corners=False)
    ff1 = F.interpolate(feat1, (H, W), mode="bilinear", align_corners=False)
    handles_init = [[4, 5], [2, 3], [7, 12]]
    current = [[5, 6], [1, 2], [9, 14]]
    tracked = track(ff0, ff1, current, handles_init)

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(
            {
                "about": "training/reference/drag_motion_reference.py",
                "features_shape": [1, C, h, w],
                "grid": [H, W],
                "radius": R_M,
                "tracking_radius": R_P,
                "features": feat.detach().flatten().tolist(),
                "handles": handles,
                "targets": targets,
                "loss": float(loss),
                "per_handle": per_handle,
                "grad": grad.flatten().tolist(),
                "resized": ff0.flatten().tolist(),
                "tracking": {
                    "current_features": feat1.flatten().tolist(),
                    "initial_handles": handles_init,
                    "handles": current,
                    "tracked": tracked,
                },
            },
            f,
        )
        f.write("\n")
    print(f"wrote {OUT}: loss {float(loss):.6f}, tracked {tracked}")


if __name__ == "__main__":
    main()
