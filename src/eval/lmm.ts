/**
 * The survey's LMM score, through any OpenAI-compatible chat-completions endpoint the user names
 * (`editkit eval --lmm-endpoint URL --lmm-model NAME`; the key, if any, from `--lmm-key-env VAR`). Off by default:
 * EmojiWorld's ground truth does not need it, and it costs a paid call per edit.
 *
 * The model sees the instruction, the input and the result, and rates four criteria from 1 to 10: editing accuracy,
 * contextual preservation, visual quality and logical realism. The LMM score is their weighted sum (`weights`,
 * default 0.4, 0.3, 0.2, 0.1: editing accuracy first, as the survey ranks the criteria; pass others to match a
 * published setting).
 */
import { UserError } from '../util/errors.js';

export const LMM_CRITERIA = [
  {
    key: 'editing_accuracy',
    label: 'Editing accuracy',
    question: 'Does the result do what the instruction asks?',
  },
  {
    key: 'contextual_preservation',
    label: 'Contextual preservation',
    question: 'Is everything the instruction does not mention left as it was in the input?',
  },
  { key: 'visual_quality', label: 'Visual quality', question: 'Is the result sharp and free of artefacts?' },
  {
    key: 'logical_realism',
    label: 'Logical realism',
    question: 'Are lighting, scale, placement and physics plausible?',
  },
] as const;

export type LmmCriterion = (typeof LMM_CRITERIA)[number]['key'];

export interface LmmScores {
  criteria: Record<LmmCriterion, number>;
  /** Σ weightᵢ · criterionᵢ, on the criteria's 1–10 scale. */
  score: number;
}

export interface LmmScorerOptions {
  /** Base URL, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`. */
  endpoint: string;
  model: string;
  apiKey?: string;
  weights?: readonly number[];
  timeoutMs?: number;
}

export function lmmPrompt(instruction: string): string {
  return [
    'You are grading an image edit. The first image is the input, the second is the edited result.',
    `The edit instruction was: "${instruction}".`,
    'Rate each criterion from 1 (worst) to 10 (best):',
    ...LMM_CRITERIA.map((c) => `- ${c.key}: ${c.label}. ${c.question}`),
    `Answer with one JSON object and nothing else, e.g. {${LMM_CRITERIA.map((c) => `"${c.key}": 7`).join(', ')}}.`,
  ].join('\n');
}

/** The criteria from a reply: the first JSON object in it, each criterion a number from 1 to 10. */
export function parseLmmReply(text: string): Record<LmmCriterion, number> {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end < start)
    throw new Error(`the LMM's reply holds no JSON object: ${text.slice(0, 120)}`);
  const parsed = JSON.parse(text.slice(start, end + 1)) as Record<string, unknown>;
  const out = {} as Record<LmmCriterion, number>;
  for (const c of LMM_CRITERIA) {
    const v = Number(parsed[c.key]);
    if (!(v >= 1 && v <= 10))
      throw new Error(`the LMM's reply gives ${c.key} = ${String(parsed[c.key])}, not 1–10`);
    out[c.key] = v;
  }
  return out;
}

export class LmmScorer {
  readonly weights: readonly number[];

  constructor(private readonly options: LmmScorerOptions) {
    this.weights = options.weights ?? [0.4, 0.3, 0.2, 0.1];
    if (this.weights.length !== LMM_CRITERIA.length || this.weights.some((w) => !(w >= 0)))
      throw new UserError(`--lmm-weights needs ${LMM_CRITERIA.length} non-negative numbers`);
    try {
      new URL(options.endpoint);
    } catch {
      throw new UserError(`--lmm-endpoint '${options.endpoint}' is not a URL`);
    }
  }

  async score(instruction: string, inputPng: Uint8Array, resultPng: Uint8Array): Promise<LmmScores> {
    const url = `${this.options.endpoint.replace(/\/+$/, '')}/chat/completions`;
    const image = (png: Uint8Array) => ({
      type: 'image_url',
      image_url: { url: `data:image/png;base64,${Buffer.from(png).toString('base64')}` },
    });
    const body = {
      model: this.options.model,
      temperature: 0,
      messages: [
        {
          role: 'user',
          content: [{ type: 'text', text: lmmPrompt(instruction) }, image(inputPng), image(resultPng)],
        },
      ],
    };
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 120_000),
      });
    } catch (error) {
      throw new UserError(
        `the LMM endpoint ${url} did not answer: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const text = await response.text();
    if (!response.ok)
      throw new UserError(`the LMM endpoint ${url} answered ${response.status}: ${text.slice(0, 200)}`);
    let content: string;
    try {
      const json = JSON.parse(text) as { choices?: { message?: { content?: string } }[] };
      content = json.choices?.[0]?.message?.content ?? '';
    } catch {
      throw new UserError(`the LMM endpoint ${url} did not return chat-completions JSON`);
    }
    const criteria = parseLmmReply(content);
    const score = LMM_CRITERIA.reduce((s, c, i) => s + this.weights[i] * criteria[c.key], 0);
    return { criteria, score };
  }
}
