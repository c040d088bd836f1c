// EditKit's web app: plain ES modules served by `editkit serve` (no build step: one file, the browser's own APIs).
// It talks to the HTTP API only: POST /api/v1/jobs, GET …/events (SSE), DELETE to cancel, …/result.png.

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token');
const api = (path, init = {}) =>
  fetch(path, {
    ...init,
    headers: { ...(init.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });

const PARAMS = {
  edit: [
    ['to', 'text', 'what the image should show', ''],
    ['from', 'text', 'what it shows now (optional)', ''],
    ['strength', 'number', 'encoding ratio r', 0.8],
    ['steps', 'number', 'steps', 50],
    ['guidance', 'number', 'guidance', 7.5],
    ['seed', 'number', 'seed (empty: random)', ''],
  ],
  drag: [
    ['prompt', 'text', 'a caption of the image (optional)', ''],
    ['lora_steps', 'number', 'LoRA steps', 80],
    ['steps', 'number', 'drag iterations', 80],
    ['seed', 'number', 'seed', ''],
  ],
  img2img: [
    ['prompt', 'text', 'what the result should show', ''],
    ['strength', 'number', 'strength', 0.8],
    ['steps', 'number', 'steps', 50],
    ['guidance', 'number', 'guidance', 7.5],
    ['seed', 'number', 'seed', ''],
  ],
  inpaint: [
    ['prompt', 'text', 'what to paint in the mask', ''],
    ['steps', 'number', 'steps', 50],
    ['guidance', 'number', 'guidance', 7.5],
    ['seed', 'number', 'seed', ''],
  ],
  generate: [
    ['prompt', 'text', 'prompt', ''],
    ['steps', 'number', 'steps', 50],
    ['guidance', 'number', 'guidance', 7.5],
    ['seed', 'number', 'seed', ''],
  ],
};

const imageCanvas = $('image-canvas');
const maskCanvas = $('mask-canvas');
const pointsLayer = $('points-layer');
let imageBlob = null;
let width = 64;
let height = 64;
let points = []; // [[x, y], …] alternating handle, target
let maskPainted = false;
let currentJob = null;

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function renderParams() {
  const method = $('method').value;
  $('params').replaceChildren(
    ...PARAMS[method].map(([name, type, label, value]) => {
      const wrap = document.createElement('label');
      wrap.textContent = label;
      const input = document.createElement('input');
      input.type = type;
      input.name = name;
      input.value = String(value);
      if (type === 'number') input.step = 'any';
      wrap.append(document.createElement('br'), input);
      return wrap;
    }),
  );
}

async function showImage(blob) {
  const bitmap = await createImageBitmap(blob);
  width = bitmap.width;
  height = bitmap.height;
  for (const c of [imageCanvas, maskCanvas]) {
    c.width = width;
    c.height = height;
  }
  imageCanvas.getContext('2d').drawImage(bitmap, 0, 0);
  pointsLayer.setAttribute('viewBox', `0 0 ${width} ${height}`);
  imageBlob = blob;
  clearMask();
  points = [];
  drawPoints();
  setStatus(`image ${width}×${height}`);
}

function clearMask() {
  maskCanvas.getContext('2d').clearRect(0, 0, width, height);
  maskPainted = false;
}

// Keyboard use of the stage: arrows move a cursor (Shift: 8 px), Enter paints there or places a drag point.
let cursor = null;

function drawPoints() {
  const parts = [];
  if (cursor)
    parts.push(
      `<rect x="${cursor[0]}" y="${cursor[1]}" width="1" height="1" fill="none" stroke="yellow" stroke-width="${Math.max(0.3, width / 256)}"/>`,
    );
  for (let i = 0; i < points.length; i += 2) {
    const [hx, hy] = points[i];
    parts.push(`<circle cx="${hx + 0.5}" cy="${hy + 0.5}" r="${Math.max(1, width / 64)}" fill="red"/>`);
    if (points[i + 1]) {
      const [tx, ty] = points[i + 1];
      parts.push(
        `<line x1="${hx + 0.5}" y1="${hy + 0.5}" x2="${tx + 0.5}" y2="${ty + 0.5}" stroke="white" stroke-width="${width / 128}"/>`,
      );
      parts.push(`<circle cx="${tx + 0.5}" cy="${ty + 0.5}" r="${Math.max(1, width / 64)}" fill="blue"/>`);
    }
  }
  pointsLayer.innerHTML = parts.join('');
}

function toImagePoint(event) {
  const rect = $('stage').getBoundingClientRect();
  return [
    Math.min(width - 1, Math.max(0, Math.floor(((event.clientX - rect.left) / rect.width) * width))),
    Math.min(height - 1, Math.max(0, Math.floor(((event.clientY - rect.top) / rect.height) * height))),
  ];
}

let painting = false;
function paint(event) {
  paintAt(toImagePoint(event));
}

function paintAt([x, y]) {
  const tool = document.querySelector('input[name=tool]:checked').value;
  if (tool === 'points') return;
  const ctx = maskCanvas.getContext('2d');
  const r = Number($('brush-size').value) * (width / 128);
  ctx.globalCompositeOperation = tool === 'erase' ? 'destination-out' : 'source-over';
  ctx.fillStyle = 'rgba(255, 0, 0, 0.5)';
  ctx.beginPath();
  ctx.arc(x + 0.5, y + 0.5, Math.max(0.5, r), 0, Math.PI * 2);
  ctx.fill();
  maskPainted = true;
}

$('stage').addEventListener('pointerdown', (event) => {
  if (!imageBlob) return;
  const tool = document.querySelector('input[name=tool]:checked').value;
  if (tool === 'points') {
    points.push(toImagePoint(event));
    drawPoints();
    setStatus(points.length % 2 ? 'now click the target' : `${points.length / 2} drag pair(s)`);
    return;
  }
  painting = true;
  paint(event);
});
$('stage').addEventListener('pointermove', (event) => painting && paint(event));
$('stage').addEventListener('keydown', (e) => {
  if (!imageBlob) return;
  const step = e.shiftKey ? 8 : 1;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  cursor ??= [Math.floor(width / 2), Math.floor(height / 2)];
  if (moves[e.key]) {
    e.preventDefault();
    cursor = [
      Math.min(width - 1, Math.max(0, cursor[0] + moves[e.key][0])),
      Math.min(height - 1, Math.max(0, cursor[1] + moves[e.key][1])),
    ];
    drawPoints();
  } else if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    const tool = document.querySelector('input[name=tool]:checked').value;
    if (tool === 'points') {
      points.push([...cursor]);
      setStatus(
        points.length % 2 ? 'now move to the target and press Enter' : `${points.length / 2} drag pair(s)`,
      );
    } else paintAt(cursor);
    drawPoints();
  }
});
window.addEventListener('pointerup', () => (painting = false));
$('overlay').addEventListener(
  'change',
  () => (maskCanvas.style.visibility = $('overlay').checked ? 'visible' : 'hidden'),
);
$('clear-mask').addEventListener('click', clearMask);
function undoPoint() {
  points.pop();
  drawPoints();
  setStatus(points.length % 2 ? 'now click the target' : `${points.length / 2} drag pair(s)`);
}
$('undo-point').addEventListener('click', undoPoint);
window.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'z' && points.length > 0) {
    e.preventDefault();
    undoPoint();
  }
});
$('clear-points').addEventListener('click', () => {
  points = [];
  drawPoints();
});
$('file').addEventListener('change', () => $('file').files[0] && showImage($('file').files[0]));
$('stage').addEventListener('dragover', (e) => e.preventDefault());
$('stage').addEventListener('drop', (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) showImage(file);
});
window.addEventListener('paste', (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith('image/'));
  if (item) showImage(item.getAsFile());
});
$('random').addEventListener('click', async () => {
  const r = await api(`/api/v1/world/random?seed=${Math.floor(Math.random() * 1e6)}`);
  if (!r.ok) return setStatus((await r.json()).error, true);
  const caption = r.headers.get('x-caption') ?? '';
  await showImage(await r.blob());
  for (const input of document.querySelectorAll('#params input[name=from], #params input[name=prompt]'))
    input.value = caption;
  setStatus(`scene: ${caption}`);
});
$('method').addEventListener('change', renderParams);

/** The painted mask as a black/white PNG. */
async function maskBlob() {
  const out = document.createElement('canvas');
  out.width = width;
  out.height = height;
  const ctx = out.getContext('2d');
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, width, height);
  const src = maskCanvas.getContext('2d').getImageData(0, 0, width, height);
  const dst = ctx.getImageData(0, 0, width, height);
  for (let i = 0; i < src.data.length; i += 4) {
    const on = src.data[i + 3] > 0 ? 255 : 0;
    dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = on;
  }
  ctx.putImageData(dst, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
}

$('run').addEventListener('click', async () => {
  const method = $('method').value;
  const params = {};
  for (const input of document.querySelectorAll('#params input')) {
    if (input.value === '') continue;
    params[input.name] = input.type === 'number' ? Number(input.value) : input.value;
  }
  if (method === 'drag') {
    if (points.length < 2 || points.length % 2) return setStatus('place handle → target pairs first', true);
    params.points = [];
    for (let i = 0; i < points.length; i += 2)
      params.points.push(`${points[i].join(',')}:${points[i + 1].join(',')}`);
    params.points = params.points.join(';');
  }
  const form = new FormData();
  form.append('method', method);
  form.append('params', JSON.stringify(params));
  if (method !== 'generate') {
    if (!imageBlob) return setStatus('open an image first', true);
    form.append('image', imageBlob, 'image.png');
    if (method === 'inpaint' && !maskPainted) return setStatus('paint a mask first', true);
    if (maskPainted && method !== 'img2img') form.append('mask', await maskBlob(), 'mask.png');
  }
  const r = await api('/api/v1/jobs', { method: 'POST', body: form });
  const job = await r.json();
  if (!r.ok) return setStatus(job.error, true);
  currentJob = job.id;
  $('cancel').disabled = false;
  $('run').disabled = true;
  $('progress').hidden = false;
  setStatus('queued');
  const events = new EventSource(`${job.events}${token ? `?token=${token}` : ''}`);
  const finish = () => {
    events.close();
    $('cancel').disabled = true;
    $('run').disabled = false;
    $('progress').hidden = true;
  };
  events.addEventListener('progress', (e) => {
    const p = JSON.parse(e.data);
    $('progress').max = p.total || 1;
    $('progress').value = p.step;
    setStatus(
      `${p.stage} ${p.step}/${p.total}${p.etaSeconds != null ? `, about ${Math.ceil(p.etaSeconds)} s left` : ''}`,
    );
  });
  events.addEventListener('done', () => {
    finish();
    showResult(job.id, method);
  });
  events.addEventListener('failed', (e) => {
    finish();
    setStatus(JSON.parse(e.data).error, true);
  });
  events.addEventListener('cancelled', () => {
    finish();
    setStatus('cancelled');
  });
});

$('cancel').addEventListener('click', async () => {
  if (currentJob) await api(`/api/v1/jobs/${currentJob}`, { method: 'DELETE' });
});

async function showResult(id, method) {
  const r = await api(`/api/v1/jobs/${id}`);
  const job = await r.json();
  const blob = await (await api(job.results.result)).blob();
  const url = URL.createObjectURL(blob);
  $('after').src = url;
  $('before').src = imageBlob ? URL.createObjectURL(imageBlob) : url;
  $('download').href = url;
  for (const [key, link] of [
    ['mask', 'mask-link'],
    ['side-by-side', 'side-link'],
  ]) {
    $(link).hidden = !job.results[key];
    if (job.results[key]) $(link).href = job.results[key] + (token ? `?token=${token}` : '');
  }
  $('result-panel').hidden = false;
  setStatus(`done: ${method}`);
  const history = JSON.parse(localStorage.getItem('editkit-history') ?? '[]');
  history.unshift({ id, method, at: new Date().toLocaleTimeString() });
  localStorage.setItem('editkit-history', JSON.stringify(history.slice(0, 10)));
  renderHistory();
}

function renderHistory() {
  const history = JSON.parse(localStorage.getItem('editkit-history') ?? '[]');
  $('history').replaceChildren(
    ...history.map((h) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = `/api/v1/jobs/${h.id}/result.png`;
      a.textContent = `${h.at} ${h.method}`;
      li.append(a);
      return li;
    }),
  );
}

$('slider').addEventListener(
  'input',
  () => ($('after-wrap').style.clipPath = `inset(0 0 0 ${$('slider').value}%)`),
);
renderParams();
renderHistory();
api('/api/v1/models')
  .then((r) => r.json())
  .then((models) => ($('model').textContent = `model: ${models.find((m) => m.default)?.name ?? '?'}`))
  .catch(() => undefined);
