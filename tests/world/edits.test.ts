import { describe, expect, it } from 'vitest';

import { UserError } from '../../src/util/errors.js';
import { applicableScene } from '../../src/world/batch.js';
import {
  EDIT_TASKS,
  applicableTasks,
  maskDilation,
  planEdit,
  sampleEdit,
  type EditResult,
  type EditTask,
} from '../../src/world/edits.js';
import { objectFootprint, renderScene } from '../../src/world/render.js';
import { parseScene, sampleScene, sceneToJson, type Scene } from '../../src/world/scene.js';

const SCENES_PER_TASK = 6;

async function differingPixels(edit: EditResult): Promise<{ total: number; outsideMask: number }> {
  const [a, b] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
  let total = 0;
  let outsideMask = 0;
  for (let p = 0; p < edit.mask.length; p++) {
    if (
      a.image[3 * p] !== b.image[3 * p] ||
      a.image[3 * p + 1] !== b.image[3 * p + 1] ||
      a.image[3 * p + 2] !== b.image[3 * p + 2]
    ) {
      total++;
      if (edit.mask[p] !== 255) outsideMask++;
    }
  }
  return { total, outsideMask };
}

describe.each(EDIT_TASKS)('edit task %s', (task: EditTask) => {
  it('yields a valid target scene and a mask covering every changed pixel', async () => {
    for (let k = 0; k < SCENES_PER_TASK; k++) {
      const seed = 1000 + 17 * k;
      const scene = applicableScene(seed, task, k % 2 === 0 ? {} : { width: 96, height: 64 });
      const before = sceneToJson(scene);
      const edit = await sampleEdit(scene, task, k);
      expect(sceneToJson(scene)).toBe(before); // the input is not mutated
      expect(edit.task).toBe(task);
      expect(parseScene(JSON.parse(sceneToJson(edit.target)))).toEqual(edit.target);
      expect(edit.instruction).toMatch(/^[a-z][a-zA-Z0-9 ,]+[a-z]$/);
      expect(edit.instruction).not.toMatch(/ {2}|undefined/);
      expect(edit.dilation).toBe(maskDilation(scene.width, scene.height));
      expect(edit.mask.every((v) => v === 0 || v === 255)).toBe(true);

      const { total, outsideMask } = await differingPixels(edit);
      expect(total, `${task} (seed ${seed}) changed no pixel: "${edit.instruction}"`).toBeGreaterThan(0);
      expect(outsideMask, `${task} (seed ${seed}) changed pixels outside its mask`).toBe(0);
      const maskArea = edit.mask.reduce((n, v) => n + (v ? 1 : 0), 0);
      if (task !== 'background') expect(maskArea).toBeLessThan(edit.mask.length * 0.8);

      const captionChanges = !['move', 'resize'].includes(task);
      if (captionChanges) expect(edit.targetCaption).not.toBe(edit.sourceCaption);
      else expect(edit.targetCaption).toBe(edit.sourceCaption);
      expect(edit.drag !== undefined).toBe(task === 'move' || task === 'resize');
      // Same seed, same edit.
      if (k === 0) expect((await sampleEdit(scene, task, k)).instruction).toBe(edit.instruction);
    }
  });
});

describe('edit semantics', () => {
  const base = parseScene({
    version: 1,
    background: { name: 'grass', seed: 1 },
    objects: [
      { class: 'cat', x: 0.25, y: 0.3, scale: 0.3 },
      { class: 'apple', x: 0.75, y: 0.7, scale: 0.3 },
    ],
  });

  it('replace names both classes and keeps the geometry', () => {
    const edit = planEdit(base, 'replace', 3);
    const i = edit.changed.source[0];
    const old = base.objects[i].class;
    const neu = edit.target.objects[i].class;
    expect(neu).not.toBe(old);
    expect(edit.instruction).toContain(`the ${old}`);
    expect(edit.instruction).toContain(neu);
    expect(edit.targetCaption).toContain(neu);
    expect({ ...edit.target.objects[i], class: old }).toMatchObject({
      x: base.objects[i].x,
      y: base.objects[i].y,
      scale: base.objects[i].scale,
    });
  });

  it('remove can empty a scene, and add fills it again', () => {
    const one: Scene = { ...base, objects: [base.objects[0]] };
    const removed = planEdit(one, 'remove', 0);
    expect(removed.target.objects).toEqual([]);
    expect(removed.instruction).toMatch(/the cat$/);
    expect(removed.targetCaption).not.toContain('cat');
    const added = planEdit(removed.target, 'add', 0);
    expect(added.target.objects).toHaveLength(1);
  });

  it('background keeps objects and names the new background', () => {
    const edit = planEdit(base, 'background', 5);
    expect(edit.target.objects).toEqual(base.objects);
    expect(edit.target.background.name).not.toBe('grass');
  });

  it('colour and style change only that attribute', () => {
    const colour = planEdit(base, 'colour', 2);
    expect(colour.target.objects[1]).toEqual({ ...base.objects[1], colour: colour.target.objects[1].colour });
    expect(colour.target.objects[1].colour).toMatch(/^(green|yellow)$/);
    expect(colour.instruction).toContain(colour.target.objects[1].colour as string);
    const style = planEdit(base, 'style', 2);
    const i = style.changed.source[0];
    expect(style.target.objects[i].style).toBe('colour');
    expect(style.instruction).toMatch(/glossy/);
  });

  it('move returns handle and target points that follow the object exactly', async () => {
    for (let seed = 0; seed < 8; seed++) {
      const scene = sampleScene(500 + seed);
      const edit = await sampleEdit(scene, 'move', seed);
      const i = edit.changed.source[0];
      const [before, after] = await Promise.all([
        objectFootprint(edit.source, i),
        objectFootprint(edit.target, i),
      ]);
      const drag = edit.drag;
      if (drag === undefined) throw new Error('move without drag points');
      expect(drag.handles.length).toBeGreaterThanOrEqual(1);
      expect(drag.targets).toHaveLength(drag.handles.length);
      const [dx, dy] = [drag.targets[0][0] - drag.handles[0][0], drag.targets[0][1] - drag.handles[0][1]];
      expect(Math.abs(dx) + Math.abs(dy)).toBeGreaterThan(0);
      const w = scene.width;
      for (let k = 0; k < drag.handles.length; k++) {
        const [hx, hy] = drag.handles[k];
        const [tx, ty] = drag.targets[k];
        expect([tx - hx, ty - hy]).toEqual([dx, dy]); // one rigid translation
        expect(after[ty * w + tx]).toBe(before[hy * w + hx]);
      }
      // The top point is on the object.
      const [hx, hy] = drag.handles[drag.handles.length - 1];
      expect(before[hy * w + hx]).toBeGreaterThanOrEqual(128);
      // The whole footprint moved by (dx, dy).
      let mismatch = 0;
      for (let y = 0; y < scene.height; y++) {
        for (let x = 0; x < w; x++) {
          const sx = x - dx;
          const sy = y - dy;
          const src = sx >= 0 && sx < w && sy >= 0 && sy < scene.height ? before[sy * w + sx] : 0;
          if (after[y * w + x] !== src) mismatch++;
        }
      }
      expect(mismatch).toBe(0);
      expect(edit.instruction).toMatch(/^(move|drag|shift) the /);
    }
  });

  it('resize maps the top and bottom of the object to their new places', async () => {
    for (let seed = 0; seed < 6; seed++) {
      const scene = sampleScene(700 + seed);
      const edit = await sampleEdit(scene, 'resize', seed);
      const i = edit.changed.target[0];
      const after = await objectFootprint(edit.target, i);
      const drag = edit.drag;
      if (drag === undefined) throw new Error('resize without drag points');
      expect(drag.handles).toHaveLength(2);
      const grew = edit.target.objects[i].scale > edit.source.objects[i].scale;
      const [top, bottom] = drag.targets;
      const [h0, h1] = drag.handles;
      // Points move apart when the object grows, together when it shrinks.
      expect(bottom[1] - top[1] > h1[1] - h0[1]).toBe(grew);
      for (const [tx, ty] of drag.targets) {
        let near = 0;
        for (let y = ty - 2; y <= ty + 2; y++)
          for (let x = tx - 2; x <= tx + 2; x++) near = Math.max(near, after[y * scene.width + x] ?? 0);
        expect(near).toBeGreaterThan(0);
      }
      expect(edit.instruction).toMatch(grew ? /bigger|larger|enlarge|scale up/ : /smaller|shrink|scale down/);
    }
  });

  it('says why a task does not apply', () => {
    const full = parseScene({
      ...base,
      objects: [...base.objects, { class: 'dog', x: 0.5, y: 0.5, scale: 0.2 }],
    });
    expect(applicableTasks(full)).not.toContain('add');
    expect(() => planEdit(full, 'add', 0)).toThrow(
      /edit task 'add' does not apply to this scene: the scene already has 3 objects/,
    );
    const plain: Scene = { ...base, objects: [{ ...base.objects[0], class: 'cupcake' }] };
    expect(() => planEdit(plain, 'colour', 0)).toThrow(UserError);
    expect(() => planEdit(plain, 'style', 0)).toThrow(/both flat and colour artwork/);
    expect(() => planEdit(base, 'paint' as EditTask, 0)).toThrow(/unknown edit task "paint"/);
    for (let seed = 0; seed < 10; seed++)
      expect(applicableTasks(base)).toContain(planEdit(base, 'random', seed).task);
  });
});
