/**
 * Whole-network gradients of the bundled models against PyTorch autograd: the UNet of models/emoji-ldm and the
 * CLIP image encoder of models/emoji-clip, differentiated by EditKit's autodiff and run in float32 on ONNX
 * Runtime's CPU provider, compared with float64 torch.autograd on the same weights.
 *
 * References: tests/fixtures/autodiff/bundled/ (manifest.json + float32 .npy), written by
 * `/usr/bin/python3 training/reference/autodiff_bundled_reference.py`, which loads the ONNX files' initializers
 * into training/emoji's PyTorch modules and checks the PyTorch forward against ONNX Runtime before writing.
 * Losses are EditKit's own: UNet mseLoss('out_sample', {input: 'out_sample_target'}); CLIP
 * cosineDistanceLoss('image_embeds', {input: 'image_embeds_direction'}). Gradients w.r.t. the inputs and a few
 * weights (float16-stored weights through their Cast outputs; float32 initializers promoted to inputs).
 * Error = max|Δ| / max|reference| per tensor, required < 1e-3 (issue 5).
 *
 * Skipped when a model is not installed (they are not part of every checkout). Fails when the installed file is
 * not the one the fixtures were made from (SHA-256 in the manifest): re-run the script after re-training.
 * EDITKIT_BUNDLED_MODELS overrides the folder holding emoji-ldm/ and emoji-clip/ (default: <repo>/models).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  buildGradient,
  cosineDistanceLoss,
  loadModel,
  mseLoss,
  tensorDims,
  tensorToFloat32,
  type LossSpec,
} from '../../src/autodiff/index.js';
import { graphOf } from '../../src/autodiff/onnx_io.js';
import { readNpy } from '../../src/util/npy.js';
import { int64Tensor, runModel, values } from './harness.js';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'autodiff', 'bundled');
const MODELS = process.env.EDITKIT_BUNDLED_MODELS ?? join(ROOT, 'models');
const TOLERANCE = 1e-3;
const SCRIPT = '/usr/bin/python3 training/reference/autodiff_bundled_reference.py';

interface InputSpec {
  file?: string;
  int64?: number[];
  shape: number[];
}
interface GradientSpec {
  wrt: string;
  file: string;
  shape: number[];
  parameter?: string;
  layout?: string;
  storage: string;
  promote: boolean;
}
interface CaseSpec {
  onnx: string;
  onnx_sha256: string;
  inputs: Record<string, InputSpec>;
  loss: {
    kind: 'mse' | 'cosine';
    tensor: string;
    target_input?: string;
    other_input?: string;
    value: number;
  };
  output: { name: string; file: string };
  ort_forward_rel_err: number;
  gradients: GradientSpec[];
}

const manifestPath = join(FIXTURES, 'manifest.json');
const manifest: Record<string, CaseSpec> = existsSync(manifestPath)
  ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, CaseSpec>)
  : {};

const CASES = [
  {
    key: 'unet',
    title: 'bundled UNet (models/emoji-ldm)',
    model: join(MODELS, 'emoji-ldm', 'unet', 'model.onnx'),
  },
  {
    key: 'clip',
    title: 'bundled CLIP image encoder (models/emoji-clip)',
    model: join(MODELS, 'emoji-clip', 'image_encoder', 'model.onnx'),
  },
];

function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}

function lossOf(spec: CaseSpec['loss']): LossSpec {
  if (spec.kind === 'mse') return mseLoss(spec.tensor, { input: spec.target_input! });
  return cosineDistanceLoss(spec.tensor, { input: spec.other_input! });
}

for (const c of CASES) {
  const installed = existsSync(c.model);
  if (!installed)
    console.info(`[bundled autodiff] skipping the ${c.title} parity test: ${c.model} is not installed`);

  describe(`parity with PyTorch autograd (float64): ${c.title}`, () => {
    it.skipIf(!installed)(
      `whole-network gradients match to max|Δ|/max|ref| < ${TOLERANCE} (skipped when the model is not installed)`,
      async () => {
        const spec = manifest[c.key];
        if (!spec) throw new Error(`no '${c.key}' entry in ${manifestPath}; run ${SCRIPT}`);
        const sha = createHash('sha256').update(readFileSync(c.model)).digest('hex');
        if (sha !== spec.onnx_sha256) {
          throw new Error(
            `${c.model} is not the file the fixtures were made from (SHA-256 ${sha}, fixtures ${spec.onnx_sha256}); ` +
              `regenerate them: ${SCRIPT}`,
          );
        }
        const npy = (file: string) => readNpy(join(FIXTURES, c.key, file));
        const model = await loadModel(c.model);

        const feeds: Record<string, ort.Tensor> = {};
        for (const [name, input] of Object.entries(spec.inputs)) {
          if (input.int64) feeds[name] = int64Tensor(input.shape, input.int64);
          else {
            const a = await npy(input.file!);
            expect([...a.shape]).toEqual(input.shape);
            feeds[name] = new ort.Tensor('float32', a.data, [...a.shape]);
          }
        }
        // float32 initializers in wrt become inputs (as in a training loop); feed their stored values.
        const promote = spec.gradients.filter((g) => g.promote).map((g) => g.wrt);
        for (const name of promote) {
          const init = graphOf(model).initializer.find((t) => t.name === name);
          if (!init) throw new Error(`${name} is not an initializer of ${c.model}`);
          feeds[name] = new ort.Tensor('float32', tensorToFloat32(init), tensorDims(init));
        }

        const g = buildGradient(model, {
          loss: lossOf(spec.loss),
          wrt: spec.gradients.map((x) => x.wrt),
          promote,
          outputs: [spec.output.name],
        });
        for (const name of promote) expect(g.inputs).toContain(name);
        const out = await runModel(g.model, feeds);

        const report: string[] = [];
        const forward = relError(values(out[spec.output.name]), (await npy(spec.output.file)).data);
        report.push(`forward ${spec.output.name} ${forward.toExponential(2)}`);
        const loss = Math.abs(values(out[g.loss])[0] - spec.loss.value) / Math.abs(spec.loss.value);
        report.push(`loss ${loss.toExponential(2)}`);
        const errors: Record<string, number> = {};
        for (const grad of spec.gradients) {
          const got = out[g.gradients[grad.wrt]];
          expect(got.dims).toEqual(grad.shape);
          const err = relError(values(got), (await npy(grad.file)).data);
          errors[grad.parameter ?? grad.wrt] = err;
          report.push(
            `d/d ${grad.parameter ?? grad.wrt}${grad.parameter ? ` (${grad.wrt}, ${grad.storage})` : ''} ${err.toExponential(2)}`,
          );
        }
        console.info(`[bundled autodiff] ${c.key}: max|Δ|/max|ref| — ${report.join('; ')}`);
        expect(forward).toBeLessThan(TOLERANCE);
        expect(loss).toBeLessThan(TOLERANCE);
        for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(TOLERANCE);
      },
    );
  });
}
