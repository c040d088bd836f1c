/**
 * The key layouts LoRA files come in, and conversion to and from PEFT's, which EditKit uses inside its graphs.
 *  - 'peft': `<module>.lora_A.weight`, `<module>.lora_B.weight` (PEFT, and diffusers ≥ 0.24 with the PEFT backend);
 *  - 'diffusers': `<module>.lora.down.weight`, `<module>.lora.up.weight` (diffusers' `LoRALinearLayer` set on a
 *    module, as `unet_lora_state_dict` saves it; newer DragDiffusion code);
 *  - 'attn-procs': `<attention>.processor.to_q_lora.down.weight` … (diffusers' `LoRAAttnProcessor` saved through
 *    `AttnProcsLayers`; DragDiffusion's `train_lora` writes this). Its `to_out_lora` adapts `to_out.0`.
 * A per-module alpha may come as a scalar tensor `<module>.alpha` (kohya-style network alphas). Without alphas,
 * diffusers applies the adapter at scale 1, whatever the rank.
 */
import type { SafeTensor } from './safetensors.js';
import { safeTensorToFloat32 } from './safetensors.js';

export type LoraKeyLayout = 'peft' | 'diffusers' | 'attn-procs';
export const LORA_KEY_LAYOUTS: readonly LoraKeyLayout[] = ['peft', 'diffusers', 'attn-procs'];

/** Factors in PEFT's names, whatever layout they came in. */
export interface PeftLora {
  layout: LoraKeyLayout;
  /** `<module>.lora_A.weight` and `<module>.lora_B.weight` for each module. */
  tensors: Map<string, SafeTensor>;
  /** Module (PEFT naming, with any prefix) → its alpha, where the file gives one. */
  alphas: Map<string, number>;
}

const PEFT_KEY = /^(.+)\.lora_([AB])\.weight$/;
const DIFFUSERS_KEY = /^(.+)\.lora\.(down|up)\.weight$/;
const ATTN_PROCS_KEY = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
const ALPHA_KEY = /^(.+)\.alpha$/;

function classify(key: string): { layout: LoraKeyLayout; module: string; factor: 'A' | 'B' } | undefined {
  let m = ATTN_PROCS_KEY.exec(key);
  if (m) {
    const projection = m[2] === 'to_out' ? 'to_out.0' : m[2];
    return { layout: 'attn-procs', module: `${m[1]}.${projection}`, factor: m[3] === 'down' ? 'A' : 'B' };
  }
  m = DIFFUSERS_KEY.exec(key);
  if (m) return { layout: 'diffusers', module: m[1], factor: m[2] === 'down' ? 'A' : 'B' };
  m = PEFT_KEY.exec(key);
  if (m) return { layout: 'peft', module: m[1], factor: m[2] as 'A' | 'B' };
  return undefined;
}

/** The module an alpha key names, in PEFT naming (attn-procs alphas name the processor's projection). */
function alphaModule(key: string): string | undefined {
  const m = ALPHA_KEY.exec(key);
  if (!m) return undefined;
  const procs = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora$/.exec(m[1]);
  if (procs) return `${procs[1]}.${procs[2] === 'to_out' ? 'to_out.0' : procs[2]}`;
  return m[1].replace(/\.lora$/, '');
}

/**
 * Read a LoRA file's tensors in any of the layouts. Throws on a file that mixes layouts, on a factor without its
 * partner, and on tensors that are neither factors nor alphas (unless `allowExtra`, which drops them).
 */
export function toPeftLayout(
  tensors: ReadonlyMap<string, SafeTensor>,
  options: { allowExtra?: boolean } = {},
): PeftLora {
  const layouts = new Set<LoraKeyLayout>();
  const out = new Map<string, SafeTensor>();
  const alphas = new Map<string, number>();
  const unknown: string[] = [];
  for (const [key, tensor] of tensors) {
    const factor = classify(key);
    if (factor) {
      layouts.add(factor.layout);
      out.set(`${factor.module}.lora_${factor.factor}.weight`, tensor);
      continue;
    }
    const module = alphaModule(key);
    if (module !== undefined && tensor.shape.reduce((p, d) => p * d, 1) === 1) {
      alphas.set(module, safeTensorToFloat32(tensor)[0]);
      continue;
    }
    unknown.push(key);
  }
  if (unknown.length > 0 && !options.allowExtra) {
    throw new Error(
      `tensors that are not LoRA factors (${LORA_KEY_LAYOUTS.join(', ')} layouts): ${unknown.slice(0, 3).join(', ')}`,
    );
  }
  if (layouts.size > 1) throw new Error(`the file mixes LoRA key layouts: ${[...layouts].join(', ')}`);
  for (const key of out.keys()) {
    const partner = key.endsWith('.lora_A.weight')
      ? key.replace(/\.lora_A\.weight$/, '.lora_B.weight')
      : key.replace(/\.lora_B\.weight$/, '.lora_A.weight');
    if (!out.has(partner)) throw new Error(`LoRA factor '${key}' has no partner '${partner}'`);
  }
  for (const module of alphas.keys()) {
    if (!out.has(`${module}.lora_A.weight`))
      throw new Error(`alpha '${module}.alpha' names no adapted module`);
  }
  return { layout: [...layouts][0] ?? 'peft', tensors: out, alphas };
}

/** PEFT-named factors renamed into `layout` (attn-procs accepts only attention projections). */
export function fromPeftLayout(
  tensors: ReadonlyMap<string, SafeTensor>,
  layout: LoraKeyLayout,
): Map<string, SafeTensor> {
  if (!LORA_KEY_LAYOUTS.includes(layout))
    throw new Error(`LoRA key layout must be one of ${LORA_KEY_LAYOUTS.join(', ')}, got '${String(layout)}'`);
  const out = new Map<string, SafeTensor>();
  for (const [key, tensor] of tensors) {
    const m = PEFT_KEY.exec(key);
    if (!m) throw new Error(`'${key}' is not a PEFT LoRA factor name`);
    const [, module, factor] = m;
    let name: string;
    if (layout === 'peft') name = key;
    else if (layout === 'diffusers') name = `${module}.lora.${factor === 'A' ? 'down' : 'up'}.weight`;
    else {
      const attn = /^(.+)\.(to_q|to_k|to_v|to_out\.0|to_out)$/.exec(module);
      if (!attn)
        throw new Error(`'${module}' is not an attention projection; the attn-procs layout holds only those`);
      const projection = attn[2].startsWith('to_out') ? 'to_out' : attn[2];
      name = `${attn[1]}.processor.${projection}_lora.${factor === 'A' ? 'down' : 'up'}.weight`;
    }
    out.set(name, tensor);
  }
  return out;
}
