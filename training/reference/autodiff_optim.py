"""Reference trajectories of torch.optim.SGD / Adam / AdamW for EditKit's host optimizers (src/autodiff/optim.ts).

    /usr/bin/python3 training/reference/autodiff_optim.py

writes tests/fixtures/autodiff/optim_reference.json: for each configuration, the initial parameters, the
gradient fed at each step (fixed, seeded; not a function of the parameters) and the parameters after each
step, all float32 as torch computes them.
"""

import json
import os

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "autodiff", "optim_reference.json")

CONFIGS = [
    ("sgd", "SGD", dict(lr=0.1)),
    ("sgd_momentum_wd", "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("sgd_nesterov", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd_dampening", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("adam", "Adam", dict(lr=0.01)),
    ("adam_wd_amsgrad", "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1)),
]


def main() -> None:
    torch.manual_seed(0)
    steps = 6
    init = torch.randn(7)
    grads = [torch.randn(7) * (1.0 + k) for k in range(steps)]
    cases = []
    for name, kind, kwargs in CONFIGS:
        p = torch.nn.Parameter(init.clone())
        opt = getattr(torch.optim, kind)([p], **kwargs)
        after = []
        for g in grads:
            p.grad = g.clone()
            opt.step()
            after.append(p.detach().clone().tolist())
        options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
        cases.append(dict(name=name, kind=kind, options=options, after=after))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(dict(init=init.tolist(), grads=[g.tolist() for g in grads], cases=cases), f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
