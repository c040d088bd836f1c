/**
 * Optimizers updating float32 parameters on the host, with PyTorch's update rules (torch.optim.SGD, Adam,
 * AdamW), so hyper-parameters from DragDiffusion/DiffusionCLIP/LoRA recipes carry over.
 *
 * The training loop runs the gradient model (ONNX Runtime), reads the `grad_<name>` outputs, calls
 * `optimizer.step(grads)`, and feeds the updated parameters at the next run. Parameters and gradients cross the
 * host boundary every step; keeping them on the GPU (ORT IO binding with device tensors and an update expressed
 * as an ONNX graph) is a follow-up.
 */

export type Parameters = Readonly<Record<string, Float32Array>>;
export type Gradients = Readonly<Record<string, ArrayLike<number>>>;

export interface Optimizer {
  /** The parameters, updated in place by {@link Optimizer.step}. */
  readonly params: Parameters;
  /** Learning rate; may be changed between steps (schedules). */
  lr: number;
  /** Number of steps taken. */
  readonly steps: number;
  /** One update from gradients keyed like the parameters (missing keys: that parameter is not updated). */
  step(grads: Gradients): void;
}

function checkGrad(name: string, p: Float32Array, g: ArrayLike<number> | undefined): g is ArrayLike<number> {
  if (g === undefined) return false;
  if (g.length !== p.length)
    throw new Error(`gradient of '${name}' has ${g.length} values, the parameter ${p.length}`);
  return true;
}

function checkParams(params: Parameters): void {
  if (Object.keys(params).length === 0) throw new Error('the optimizer has no parameters');
}

export interface SgdOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient, as torch.optim.SGD's weight_decay. */
  weightDecay?: number;
}

/** torch.optim.SGD: g += wd·p; buf = μ·buf + (1 − τ)·g (buf = g at the first step); p −= lr·(nesterov ? g + μ·buf : buf). */
export class SGD implements Optimizer {
  lr: number;
  steps = 0;
  private readonly buffers = new Map<string, Float32Array>();

  constructor(
    readonly params: Parameters,
    private readonly options: SgdOptions,
  ) {
    checkParams(params);
    this.lr = options.lr;
    if (options.nesterov && (!options.momentum || options.dampening))
      throw new Error('Nesterov momentum needs momentum > 0 and no dampening');
  }

  step(grads: Gradients): void {
    const { momentum = 0, dampening = 0, nesterov = false, weightDecay = 0 } = this.options;
    for (const [name, p] of Object.entries(this.params)) {
      const g = grads[name];
      if (!checkGrad(name, p, g)) continue;
      let buf = this.buffers.get(name);
      const first = !buf;
      if (momentum && !buf) {
        buf = new Float32Array(p.length);
        this.buffers.set(name, buf);
      }
      for (let i = 0; i < p.length; i++) {
        let d = g[i] + weightDecay * p[i];
        if (momentum && buf) {
          buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
          d = nesterov ? d + momentum * buf[i] : buf[i];
        }
        p[i] -= this.lr * d;
      }
    }
    this.steps++;
  }
}

export interface AdamOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  /** Adam: L2 penalty added to the gradient. AdamW: decoupled decay p −= lr·wd·p (default 0.01 there). */
  weightDecay?: number;
  amsgrad?: boolean;
}

/** torch.optim.Adam (bias-corrected moments; optional AMSGrad). */
export class Adam implements Optimizer {
  lr: number;
  steps = 0;
  protected readonly betas: readonly [number, number];
  protected readonly eps: number;
  protected readonly weightDecay: number;
  private readonly amsgrad: boolean;
  private readonly state = new Map<
    string,
    { m: Float32Array; v: Float32Array; vmax?: Float32Array; t: number }
  >();

  constructor(
    readonly params: Parameters,
    options: AdamOptions = {},
    private readonly decoupled = false,
  ) {
    checkParams(params);
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? (decoupled ? 1e-2 : 0);
    this.amsgrad = options.amsgrad ?? false;
  }

  step(grads: Gradients): void {
    const [b1, b2] = this.betas;
    for (const [name, p] of Object.entries(this.params)) {
      const g = grads[name];
      if (!checkGrad(name, p, g)) continue;
      let s = this.state.get(name);
      if (!s) {
        s = { m: new Float32Array(p.length), v: new Float32Array(p.length), t: 0 };
        if (this.amsgrad) s.vmax = new Float32Array(p.length);
        this.state.set(name, s);
      }
      s.t++;
      const c1 = 1 - b1 ** s.t;
      const c2 = 1 - b2 ** s.t;
      const stepSize = this.lr / c1;
      const sqrtC2 = Math.sqrt(c2);
      for (let i = 0; i < p.length; i++) {
        let d = g[i];
        if (this.decoupled) p[i] *= 1 - this.lr * this.weightDecay;
        else if (this.weightDecay) d += this.weightDecay * p[i];
        s.m[i] = b1 * s.m[i] + (1 - b1) * d;
        s.v[i] = b2 * s.v[i] + (1 - b2) * d * d;
        let v = s.v[i];
        if (s.vmax) v = s.vmax[i] = Math.max(s.vmax[i], v);
        p[i] -= (stepSize * s.m[i]) / (Math.sqrt(v) / sqrtC2 + this.eps);
      }
    }
    this.steps++;
  }
}

/** torch.optim.AdamW: Adam with decoupled weight decay (default 0.01). */
export class AdamW extends Adam {
  constructor(params: Parameters, options: AdamOptions = {}) {
    super(params, options, true);
  }
}

/** Scale gradients in place so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_); returns the norm before. */
export function clipGradNorm(grads: Readonly<Record<string, Float32Array>>, maxNorm: number): number {
  let sq = 0;
  for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  const factor = maxNorm / (norm + 1e-6);
  if (factor < 1) for (const g of Object.values(grads)) for (let i = 0; i < g.length; i++) g[i] *= factor;
  return norm;
}
