/** DiffusionCLIP's text pairs: lists pair up (the direction is their mean), and bad lists are refused. */
import { describe, expect, it } from 'vitest';
import { textPairs } from '../../src/pipelines/diffusion_clip/finetune.js';
import { UserError } from '../../src/util/errors.js';

describe('DiffusionCLIP text pairs', () => {
  it('takes one text or lists of equal length, trimmed', () => {
    expect(textPairs(' a picture on the grass ', 'a picture in the snow')).toEqual({
      sourceTexts: ['a picture on the grass'],
      targetTexts: ['a picture in the snow'],
    });
    expect(
      textPairs(['a cat on the grass', 'a dog on the grass'], ['a cat in the snow', 'a dog in the snow']),
    ).toEqual({
      sourceTexts: ['a cat on the grass', 'a dog on the grass'],
      targetTexts: ['a cat in the snow', 'a dog in the snow'],
    });
    // One pair may be equal as long as another gives a direction.
    expect(textPairs(['a', 'b'], ['a', 'c']).targetTexts).toEqual(['a', 'c']);
  });

  it('refuses lists of different lengths, empty texts and no direction', () => {
    expect(() => textPairs(['a', 'b'], ['c'])).toThrow(/as many source texts as target texts, got 2 and 1/);
    expect(() => textPairs([], [])).toThrow(UserError);
    expect(() => textPairs(['a', ' '], ['b', 'c'])).toThrow(/give both texts/);
    expect(() => textPairs(['a', 'b'], ['a', 'b'])).toThrow(/no direction to follow/);
  });
});
