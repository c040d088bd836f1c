import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const EMOJI_LDM = join(import.meta.dirname, '..', '..', 'models', 'emoji-ldm');

/**
 * Whether the bundled model can carry an end-to-end quality test. Edits are judged against EmojiWorld's ground
 * truth, which only means something once the model draws recognisable objects: the training run records the
 * judge's text-to-image figure, and issue 3's target for it (every requested object found in ≥ 90% of samples)
 * is the bar. The CPU-trained v0 model does not reach it, so these tests report why they are skipped.
 */
export function bundledModelStatus(): { usable: boolean; reason: string } {
  if (!existsSync(join(EMOJI_LDM, 'model_index.json'))) {
    return { usable: false, reason: `the bundled model is not installed at ${EMOJI_LDM}` };
  }
  // For developers: run the tests on whatever model is installed, to see its figures.
  if (process.env.EDITKIT_FORCE_BUNDLED_TESTS === '1') return { usable: true, reason: '' };
  const reportPath = join(EMOJI_LDM, 'editkit_training.json');
  if (!existsSync(reportPath))
    return { usable: false, reason: `${reportPath} (the training report) is missing` };
  const report = JSON.parse(readFileSync(reportPath, 'utf8')) as {
    preset?: string;
    metrics?: { text_to_image?: { all_objects_found?: number } };
  };
  const found = report.metrics?.text_to_image?.all_objects_found;
  if (typeof found !== 'number' || found < 0.9) {
    return {
      usable: false,
      reason: `the bundled model (preset '${report.preset ?? '?'}') finds every requested object in ${typeof found === 'number' ? (found * 100).toFixed(0) : '?'}% of samples; end-to-end edit tests need ≥ 90% (issue 3's target)`,
    };
  }
  return { usable: true, reason: '' };
}
