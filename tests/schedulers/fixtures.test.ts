import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/runtime/ndarray.js';
import {
  createInverseScheduler,
  createScheduler,
  type CreatedScheduler,
  type SchedulerName,
} from '../../src/schedulers/index.js';

/** Written by training/fixtures/make_scheduler_fixtures.py from the float64 reference in training/reference. */
interface SchedulerFixture {
  name: string;
  description: string;
  config: Record<string, unknown>;
  override: SchedulerName | null;
  inverse: boolean;
  expected_name: string;
  expected_notice: boolean;
  num_inference_steps: number;
  eta: number;
  begin_index: number | null;
  shape: number[];
  timesteps: number[];
  init_noise_sigma: number;
  alphas_cumprod_probe: [number, number][];
  clean?: number[];
  noise?: number[];
  noised?: number[];
  initial_sample: number[];
  steps: {
    timestep: number;
    model_output: number[];
    scaled_model_input?: number[];
    variance_noise?: number[];
    prev_sample: number[];
    pred_original_sample: number[];
  }[];
}

const FIXTURE_DIR = new URL('../fixtures/schedulers/', import.meta.url);
const fixtures: SchedulerFixture[] = readdirSync(FIXTURE_DIR)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => JSON.parse(readFileSync(new URL(file, FIXTURE_DIR), 'utf8')) as SchedulerFixture);

/** float32 arithmetic against a float64 reference: 1e-5 of the array's magnitude. */
function expectClose(actual: NDArray, expected: number[], what: string): void {
  expect(actual.size, what).toBe(expected.length);
  const scale = Math.max(1, ...expected.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual.data[i] - expected[i]));
  expect(worst / scale, `${what}: max |diff| ${worst} at scale ${scale}`).toBeLessThan(1e-5);
}

function array(values: number[], shape: number[]): NDArray {
  return new NDArray(Float32Array.from(values), shape);
}

describe('schedulers match the float64 reference', () => {
  it('has fixtures', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(10);
  });

  for (const fixture of fixtures) {
    it(`${fixture.name}: ${fixture.description}`, () => {
      const created: CreatedScheduler = fixture.inverse
        ? { scheduler: createInverseScheduler(fixture.config), notice: undefined }
        : createScheduler(fixture.config, fixture.override === null ? {} : { override: fixture.override });
      const { scheduler } = created;
      expect(scheduler.name).toBe(fixture.expected_name);
      expect(created.notice !== undefined).toBe(fixture.expected_notice);
      for (const [index, value] of fixture.alphas_cumprod_probe) {
        expect(scheduler.alphasCumprod[index]).toBeCloseTo(value, 12);
      }

      scheduler.setTimesteps(fixture.num_inference_steps);
      expect([...scheduler.timesteps]).toEqual(fixture.timesteps);
      expect(scheduler.initNoiseSigma).toBeCloseTo(fixture.init_noise_sigma, 10);

      const begin = fixture.begin_index ?? 0;
      if (fixture.begin_index !== null) {
        scheduler.setBeginIndex?.(begin);
        const noised = scheduler.addNoise(
          array(fixture.clean ?? [], fixture.shape),
          array(fixture.noise ?? [], fixture.shape),
          scheduler.timesteps[begin],
        );
        expectClose(noised, fixture.noised ?? [], 'addNoise');
      }
      let sample = array(fixture.initial_sample, fixture.shape);

      expect(fixture.steps.length).toBe(fixture.timesteps.length - begin);
      fixture.steps.forEach((expected, k) => {
        const t = scheduler.timesteps[begin + k];
        expect(t).toBe(expected.timestep);
        const scaled = scheduler.scaleModelInput(sample, t);
        // The fixture omits the scaled input where scaling is the identity.
        expectClose(scaled, expected.scaled_model_input ?? [...sample.data], `step ${k} scaled input`);
        const out = scheduler.step(array(expected.model_output, fixture.shape), t, sample, {
          eta: fixture.eta,
          varianceNoise: expected.variance_noise && array(expected.variance_noise, fixture.shape),
        });
        expectClose(
          out.predOriginalSample,
          expected.pred_original_sample,
          `step ${k} (t=${t}) predOriginalSample`,
        );
        expectClose(out.prevSample, expected.prev_sample, `step ${k} (t=${t}) prevSample`);
        sample = out.prevSample;
      });
    });
  }
});
