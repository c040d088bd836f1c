import { StableDiffusionBundle } from '../models/bundle.js';
import type { DeviceName } from '../runtime/device.js';
import { UserError } from '../util/errors.js';

/**
 * Bundles by name, loaded on first use and kept (the server and every worker hold one per model they serve). A
 * load that fails is forgotten, so the next job tries again.
 */
export class ModelLoader {
  private readonly bundles = new Map<string, Promise<StableDiffusionBundle>>();

  constructor(
    private readonly models: ReadonlyMap<string, string>,
    private readonly settings: { device: DeviceName; threads?: number },
  ) {}

  load(name: string): Promise<StableDiffusionBundle> {
    const dir = this.models.get(name);
    if (!dir) return Promise.reject(new UserError(`no model '${name}' here`));
    let bundle = this.bundles.get(name);
    if (!bundle) {
      bundle = StableDiffusionBundle.load(dir, {
        device: this.settings.device,
        intraOpNumThreads: this.settings.threads,
      });
      bundle.catch(() => this.bundles.delete(name));
      this.bundles.set(name, bundle);
    }
    return bundle;
  }

  isLoaded(name: string): boolean {
    return this.bundles.has(name);
  }

  async release(): Promise<void> {
    for (const b of this.bundles.values()) await (await b.catch(() => undefined))?.release();
    this.bundles.clear();
  }
}
