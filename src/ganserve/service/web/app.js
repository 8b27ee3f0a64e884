// ganserve's web page: one ES module, no build step, no dependencies.
//
// Views are hash routes: #/models, #/models/NAME?seed=..., #/jobs, #/jobs/ID, #/submit.
// Every request goes through `request()`, which adds the API key kept in sessionStorage as
// `Authorization: Bearer`. Images are fetched the same way and shown from blob: URLs, so they
// also load when the server protects sampling with keys, and a refused one shows the
// server's problem detail instead of a broken image. The job event stream is an EventSource,
// which cannot send headers: it works because GET routes (events included) are open.

const KEY_STORAGE = "ganserve.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const JOBS_REFRESH_MS = 3000;
const HISTORY_REFRESH_MS = 3000;
const INPUT_DEBOUNCE_MS = 300;

// --- small helpers -----------------------------------------------------------------------

/** An element: h("p", {class: "x", onclick: fn}, "text", child, ...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name in el && typeof value !== "string") {
      el[name] = value; // properties such as checked, value, hidden
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function byId(id) {
  return document.getElementById(id);
}

function debounce(fn, ms) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

function fmtNumber(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "–" : String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(4)));
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A table cell labelled for the stacked phone layout; its content in one block. */
function cell(label, ...children) {
  return h("td", { "data-label": label }, h("div", {}, ...children));
}

function statusBadge(status, id) {
  return h("span", { class: `badge status-${status}`, id }, status);
}

/** A definition list of name -> value pairs (losses, metrics); null when there are none. */
function pairs(object, label) {
  const entries = Object.entries(object || {});
  if (!entries.length) return null;
  return h(
    "dl",
    { class: "pairs", "aria-label": label },
    entries.map(([name, value]) => [
      h("dt", {}, name),
      h("dd", {}, typeof value === "object" && value !== null ? JSON.stringify(value) : fmtNumber(value)),
    ]),
  );
}

/** [a heading, the list] for a non-empty name -> value object, else []. */
function titled(title, object, level = "h3") {
  const list = pairs(object, title);
  return list ? [h(level, {}, title), list] : [];
}

/** A number field; inputmode gives phones the right keyboard. */
function numberInput(id, name, value, { step = "1", ...attrs } = {}) {
  const inputmode = step === "1" ? "numeric" : "decimal";
  return h("input", { id, name, type: "number", step, inputmode, value, ...attrs });
}

function randomSeed() {
  return String(crypto.getRandomValues(new Uint32Array(1))[0]);
}

// --- the API key ---------------------------------------------------------------------------

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  showKeyState();
}

function showKeyState() {
  const key = apiKey();
  byId("key-summary").textContent = key ? "API key (set)" : "API key";
  byId("key-status").textContent = key
    ? "A key is stored for this browser tab."
    : "No key stored: requests are sent without one.";
}

function setupKeyForm() {
  const input = byId("api-key");
  input.value = apiKey();
  showKeyState();
  const panel = byId("key-panel");
  const close = () => {
    panel.open = false;
    byId("key-summary").focus();
  };
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    hideFlash();
    if (input.value.trim()) close(); // the summary now says "API key (set)"
  });
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel.open) close();
  });
  byId("key-forget").addEventListener("click", () => {
    input.value = "";
    setApiKey("");
  });
}

// --- requests ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem.detail || problem.title || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.problem = problem;
    this.field = problem.field || null;
  }

  /** The message for a person: the server's detail, and what to do about a key. */
  get explanation() {
    if (this.status === 401) return `${this.message}. Enter an API key under "API key" at the top.`;
    if (this.status === 403) return `${this.message}. Check the key under "API key" at the top.`;
    return this.message;
  }
}

/** fetch() with the API key; resolves to the Response when it is 2xx (or 304), else ApiError. */
async function request(path, { method = "GET", json, body, contentType, signal, cache, idempotencyKey } = {}) {
  const headers = { Accept: "application/json, image/png, */*" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey; // a resend makes no second job
  const init = { method, headers, signal };
  if (cache) init.cache = cache;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof json === "string" ? json : JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = contentType; // a raw body: an image to translate
    init.body = body;
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { detail: `${response.status} ${response.statusText}` };
    }
    const error = new ApiError(response.status, problem);
    if (response.status === 401 || response.status === 403) byId("key-panel").open = true;
    throw error;
  }
  return response;
}

async function getJSON(path, options) {
  return (await request(path, options)).json();
}

function isAbort(error) {
  return error && error.name === "AbortError";
}

function flash(message) {
  const el = byId("flash");
  el.textContent = message;
  el.hidden = false;
}

function hideFlash() {
  const el = byId("flash");
  el.hidden = true;
  el.textContent = "";
}

/**
 * Show `url`'s PNG in `img` through fetch (so the API key goes along), as a blob: URL.
 * `figure` gets data-state loading | loaded | error and aria-busy; `errorEl` the problem.
 * Returns the Response, or null when it failed or was superseded.
 */
async function showImage(img, url, { figure, errorEl, signal, cache, emptyMessage, upscaleTo } = {}) {
  const token = (img._token = (img._token || 0) + 1); // the newest call wins
  const box = figure || img;
  box.dataset.state = "loading";
  box.setAttribute("aria-busy", "true");
  try {
    const response = await request(url, { signal, cache });
    const blob = await response.blob();
    if (token !== img._token) return null;
    const previous = img._blobUrl;
    img._blobUrl = URL.createObjectURL(blob);
    img.src = img._blobUrl;
    img.dataset.url = url; // the PNG's own URL (tests and the "open" link)
    img.hidden = false;
    if (previous) URL.revokeObjectURL(previous);
    try {
      await img.decode();
    } catch {
      /* shown anyway */
    }
    if (token !== img._token) return null;
    if (upscaleTo && img.naturalWidth) {
      // small pixel grids drawn bigger, by a whole factor so pixels stay square
      img.width = img.naturalWidth * Math.max(1, Math.floor(upscaleTo / img.naturalWidth));
    }
    if (errorEl) errorEl.textContent = "";
    box.dataset.state = "loaded";
    return response;
  } catch (error) {
    if (isAbort(error) || token !== img._token) return null;
    img.hidden = true;
    box.dataset.state = "error";
    if (errorEl) {
      errorEl.textContent =
        error instanceof ApiError && error.status === 404 && emptyMessage
          ? emptyMessage
          : error instanceof ApiError
            ? error.explanation
            : `Could not load the image: ${error.message}`;
    }
    return null;
  } finally {
    if (token === img._token) box.removeAttribute("aria-busy");
  }
}

// --- routing -------------------------------------------------------------------------------

const ROUTES = [
  { pattern: /^\/models$/, view: modelsView, nav: "models" },
  { pattern: /^\/models\/([^/]+)$/, view: modelView, nav: "models" },
  { pattern: /^\/jobs$/, view: jobsView, nav: "jobs" },
  { pattern: /^\/jobs\/([^/]+)$/, view: jobView, nav: "jobs" },
  { pattern: /^\/submit$/, view: submitView, nav: "submit" },
];

let current = null; // {path, controller, cleanups}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // malformed escapes: used as written (the API then says it does not exist)
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/models";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const query = at < 0 ? "" : raw.slice(at + 1);
  return { path: path.replace(/\/+$/, "") || "/models", params: new URLSearchParams(query) };
}

async function route({ focus = true } = {}) {
  const { path, params } = parseHash();
  if (current) {
    current.controller.abort();
    for (const cleanup of current.cleanups) cleanup();
  }
  const controller = new AbortController();
  const cleanups = [];
  current = { path, controller, cleanups };
  hideFlash();
  const root = byId("view");
  root.replaceChildren();
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (match && link.dataset.nav === match.r.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!match) {
    root.append(
      h("h1", { tabindex: "-1" }, "Not found"),
      h("p", {}, `No page ${path}. `, h("a", { href: "#/models" }, "Models")),
    );
    return;
  }
  const ctx = {
    root,
    params,
    args: match.m.slice(1).map(safeDecode),
    signal: controller.signal,
    onCleanup: (fn) => cleanups.push(fn),
    active: () => current && current.controller === controller,
  };
  try {
    await match.r.view(ctx);
  } catch (error) {
    if (isAbort(error) || !ctx.active()) return;
    root.replaceChildren(
      h(
        "h1",
        { tabindex: "-1" },
        error instanceof ApiError && error.status === 404 ? "Not found" : "Something went wrong",
      ),
      h(
        "p",
        { class: "error", role: "alert" },
        error instanceof ApiError ? error.explanation : String(error.message || error),
      ),
    );
  }
  if (focus && ctx.active()) {
    const heading = root.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }
}

function heading(text, ...extra) {
  document.title = `${text} · ganserve`;
  return h("h1", { tabindex: "-1" }, text, ...extra);
}

// --- models --------------------------------------------------------------------------------

// A gallery: a card per model with a small sample grid of the version `latest` serves (the
// concrete version number goes in the URL, so the browser's cache and the ETag keep it
// cheap), its aliases and key metrics. A conditional model shows one row per class.
const GALLERY_SEED = 0;
const GALLERY_PER_ROW = 8;
const GALLERY_PX = 256; // grids are upscaled by a whole factor to about this width
const GALLERY_MAX_CLASSES = 10; // rows shown for a conditional model; the rest on its page
const KEY_METRICS = ["fd", "kid", "coverage", "cond_acc"];

function galleryScale(imageWidth, count) {
  const width = count * (imageWidth + 1) + 1; // make_grid's layout: 1 px padding
  return Math.max(1, Math.min(16, Math.ceil(GALLERY_PX / width)));
}

async function modelsView(ctx) {
  const page = await getJSON("v1/models", { signal: ctx.signal });
  const root = ctx.root;
  root.append(heading("Models"));
  if (!page.items.length) {
    root.append(h("p", {}, "No models yet: ", h("a", { href: "#/submit" }, "train one"), "."));
    return;
  }
  const cards = new Map();
  root.append(
    h(
      "p",
      { class: "hint" },
      "Each finished training job registers a version of its model. Open one to sample it.",
    ),
    h(
      "ul",
      { class: "gallery", id: "gallery", "aria-label": "Models" },
      page.items.map((model) => {
        const href = `#/models/${encodeURIComponent(model.name)}`;
        const body = h("div", { class: "gallery-body" }, h("p", { class: "hint" }, "Loading…"));
        const card = h(
          "li",
          { class: "card gallery-card", "data-model": model.name },
          h("h2", {}, h("a", { href }, model.name)),
          body,
          h(
            "p",
            { class: "hint" },
            `v${model.latest_version} · ${model.versions} version${model.versions === 1 ? "" : "s"} · ${fmtTime(model.updated_at)}`,
          ),
          aliasList(model.aliases),
        );
        cards.set(model.name, body);
        return card;
      }),
    ),
  );
  // Each model's serving version, filled in as the details come.
  await Promise.all(
    page.items.map(async (model) => {
      const body = cards.get(model.name);
      try {
        const detail = await getJSON(`v1/models/${encodeURIComponent(model.name)}`, { signal: ctx.signal });
        const serving = detail.versions.find((v) => v.version === detail.latest_version);
        body.replaceChildren(...galleryCardBody(model.name, serving, ctx.signal));
      } catch (error) {
        if (!isAbort(error)) body.replaceChildren(h("p", { class: "error" }, error.message || String(error)));
      }
    }),
  );
}

function galleryCardBody(name, version, signal) {
  if (!version) return [h("p", { class: "hint" }, "No version to show.")];
  if (version.kind === "translation") {
    const [a, b] = version.domains || ["A", "B"];
    return [h("p", { class: "hint" }, `CycleGAN v${version.version}: translates ${a} ↔ ${b}. Open it to translate a picture.`)];
  }
  const base = `v1/models/${encodeURIComponent(name)}/samples.png`;
  const width = version.image_shape ? version.image_shape[2] : 8;
  const scale = galleryScale(width, GALLERY_PER_ROW);
  const query = (extra) =>
    new URLSearchParams({
      version: String(version.version),
      seed: String(GALLERY_SEED),
      n: String(GALLERY_PER_ROW),
      nrow: String(GALLERY_PER_ROW),
      scale: String(scale),
      ...extra,
    });
  const classes = version.conditional ? version.classes || [] : [];
  const rows = classes.length
    ? classes.slice(0, GALLERY_MAX_CLASSES).map((c, i) => ({ label: String(i), name: c }))
    : [{ label: null, name: null }];
  const figure = h("figure", { class: "gallery-grid" });
  for (const row of rows) {
    const params = row.label === null ? query({}) : query({ label: row.label });
    const img = h("img", {
      class: "pixelated",
      alt:
        row.label === null
          ? `${GALLERY_PER_ROW} samples of ${name} v${version.version}`
          : `${GALLERY_PER_ROW} samples of ${name} v${version.version}, class ${row.name}`,
      hidden: true,
    });
    const error = h("span", { class: "error" });
    const line = h(
      "div",
      { class: "gallery-row" },
      row.label === null ? null : h("span", { class: "gallery-class" }, row.name),
      img,
      error,
    );
    figure.append(line);
    showImage(img, `${base}?${params}`, { figure: line, errorEl: error, signal });
  }
  if (classes.length > GALLERY_MAX_CLASSES)
    figure.append(h("figcaption", { class: "hint" }, `First ${GALLERY_MAX_CLASSES} of ${classes.length} classes.`));
  const metrics = Object.fromEntries(
    KEY_METRICS.filter((k) => version.metrics && typeof version.metrics[k] === "number").map((k) => [
      k,
      version.metrics[k],
    ]),
  );
  return [figure, pairs(metrics, `Metrics of ${name} v${version.version}`) || h("p", { class: "hint" }, "No metrics.")];
}

function aliasList(aliases) {
  const entries = Object.entries(aliases || {});
  if (!entries.length) return "–";
  return h(
    "ul",
    { class: "tags" },
    entries.map(([alias, version]) => h("li", {}, `${alias} → v${version}`)),
  );
}

const SAMPLER_DEFAULTS = {
  version: "latest",
  seed: "0",
  n: "16",
  label: "",
  truncation: "",
  scale: "8",
  b: "1",
  steps: "8",
};

// --- translation models (CycleGAN) --------------------------------------------------------

// Upload a picture: it is translated A->B and B->A by the version `latest` serves (pinned by
// number, so all four pictures come from one version), and each translation is sent back
// the other way: the reconstructions show what the cycle keeps.
async function translateView(ctx, model) {
  const name = model.name;
  const base = `v1/models/${encodeURIComponent(name)}`;
  const latest = model.versions.find((v) => v.version === model.aliases.latest) || model.versions.at(-1);
  const [domainA, domainB] = latest.domains || ["A", "B"];
  const fileInput = h("input", { id: "t-file", type: "file", accept: "image/png,image/jpeg" });
  const keepSize = h("input", { id: "t-keep", type: "checkbox" });
  const error = h("p", { id: "t-error", class: "error", role: "alert" });
  const status = h("p", { id: "t-status", "aria-live": "polite" });
  const images = {};
  const figure = (id, caption) => {
    images[id] = h("img", { id, class: "pixelated", alt: caption, hidden: true });
    return h("figure", { class: "translation" }, images[id], h("figcaption", {}, caption));
  };
  const grid = h(
    "div",
    { id: "translate-grid", class: "translate-grid", "data-state": "empty" },
    figure("t-input", "Your picture"),
    figure("t-a2b", `A→B: as ${domainB}`),
    figure("t-a2b-back", "…and back to A"),
    figure("t-b2a", `B→A: as ${domainA}`),
    figure("t-b2a-back", "…and back to B"),
  );
  ctx.root.append(
    heading(name, h("span", { class: "muted" }, ` v${latest.version} · CycleGAN`)),
    h("p", {}, `Translates pictures between ${domainA} (A) and ${domainB} (B). Any size and `,
      "colour: the picture is centre-cropped and resized to the model's size, unless you keep its size."),
    h(
      "form",
      { id: "translate-form", class: "sampler", onsubmit: (event) => event.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "t-file" }, "Picture (PNG or JPEG)"), fileInput),
      h("div", { class: "field" }, h("label", { for: "t-keep" }, keepSize, " Keep its size")),
    ),
    status,
    error,
    grid,
  );
  const show = (id, blob) => {
    const img = images[id];
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
  };
  const translate = async (blob, direction) => {
    const params = new URLSearchParams({
      direction,
      keep_size: keepSize.checked ? "true" : "false",
      version: String(latest.version),
    });
    const response = await request(`${base}/translate?${params}`, {
      method: "POST",
      body: blob,
      contentType: blob.type === "image/jpeg" ? "image/jpeg" : "image/png",
      signal: ctx.signal,
    });
    return response.blob();
  };
  const run = async () => {
    const file = fileInput.files[0];
    if (!file) return;
    error.textContent = "";
    grid.dataset.state = "loading";
    status.textContent = "Translating…";
    show("t-input", file);
    try {
      const ab = await translate(file, "a2b");
      show("t-a2b", ab);
      show("t-a2b-back", await translate(ab, "b2a"));
      const ba = await translate(file, "b2a");
      show("t-b2a", ba);
      show("t-b2a-back", await translate(ba, "a2b"));
      grid.dataset.state = "loaded";
      status.textContent = `Translated by ${name} v${latest.version}.`;
    } catch (e) {
      if (isAbort(e)) return;
      grid.dataset.state = "error";
      status.textContent = "";
      error.textContent = e.explanation || e.message || String(e);
    }
  };
  fileInput.addEventListener("change", run);
  keepSize.addEventListener("change", run);
}

async function modelView(ctx) {
  const [name] = ctx.args;
  const model = await getJSON(`v1/models/${encodeURIComponent(name)}`, { signal: ctx.signal });
  const served = model.versions.find((v) => v.version === model.aliases.latest);
  if (served && served.kind === "translation") return translateView(ctx, model);
  const state = { ...SAMPLER_DEFAULTS };
  for (const key of Object.keys(state)) {
    if (ctx.params.has(key)) state[key] = ctx.params.get(key);
  }
  const base = `v1/models/${encodeURIComponent(name)}`;
  const root = ctx.root;

  const versionOf = (ref) => {
    const number = /^\d+$/.test(ref) ? Number(ref) : model.aliases[ref];
    return model.versions.find((v) => v.version === number) || null;
  };

  // --- the sampler form
  const versionSelect = h("select", { id: "s-version", name: "version" });
  for (const [alias, version] of Object.entries(model.aliases)) {
    versionSelect.append(h("option", { value: alias }, `${alias} (v${version})`));
  }
  for (const v of [...model.versions].reverse())
    versionSelect.append(h("option", { value: String(v.version) }, `v${v.version}`));
  if (![...versionSelect.options].some((o) => o.value === state.version)) {
    versionSelect.append(h("option", { value: state.version }, state.version));
  }
  versionSelect.value = state.version;

  const seedInput = numberInput("s-seed", "seed", state.seed, { min: "0", step: "1", required: true });
  const nInput = numberInput("s-n", "n", state.n, { min: "1", max: "256", step: "1" });
  const labelSelect = h("select", { id: "s-label", name: "label" });
  const labelField = h("div", { class: "field" }, h("label", { for: "s-label" }, "Class"), labelSelect);
  const truncationInput = numberInput("s-truncation", "truncation", state.truncation, {
    min: "0.05",
    step: "0.05",
    placeholder: "off",
    "aria-describedby": "s-truncation-hint",
  });
  const scaleInput = numberInput("s-scale", "scale", state.scale, { min: "1", max: "16", step: "1" });
  const sampleImg = h("img", { id: "sample-img", class: "pixelated", alt: "", hidden: true });
  const sampleError = h("p", { id: "sample-error", class: "error", role: "alert" });
  const sampleCaption = h("figcaption", { id: "sample-caption", "aria-live": "polite" });
  const sampleFigure = h("figure", { id: "sample-figure", class: "sample" }, sampleImg, sampleCaption);
  const shareInput = h("input", {
    id: "s-share",
    type: "url",
    readonly: true,
    "aria-describedby": "s-share-hint",
  });
  const openLink = h("a", { id: "s-open", href: "#", target: "_blank", rel: "noopener" }, "Open the PNG");

  const updateLabels = () => {
    const version = versionOf(versionSelect.value);
    const classes = version && version.conditional ? version.classes || [] : [];
    labelSelect.replaceChildren(
      h("option", { value: "" }, "Any (drawn from each seed)"),
      ...classes.map((c, i) => h("option", { value: String(i) }, c === String(i) ? c : `${i}: ${c}`)),
    );
    labelField.hidden = classes.length === 0;
    labelSelect.value =
      classes.length && state.label !== "" && Number(state.label) < classes.length ? state.label : "";
  };

  const readState = () => {
    state.version = versionSelect.value;
    state.seed = seedInput.value.trim() || "0";
    state.n = nInput.value.trim() || "1";
    state.label = labelField.hidden ? "" : labelSelect.value;
    state.truncation = truncationInput.value.trim();
    state.scale = scaleInput.value.trim() || "1";
    state.b = seedBInput.value.trim() || "0";
    state.steps = stepsInput.value.trim() || "8";
  };

  const commonParams = () => {
    const p = new URLSearchParams();
    if (state.label !== "") p.set("label", state.label);
    if (state.truncation !== "") p.set("truncation", state.truncation);
    p.set("version", state.version);
    p.set("scale", state.scale);
    return p;
  };

  const writeHash = () => {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value !== "" && (value !== SAMPLER_DEFAULTS[key] || key === "seed")) q.set(key, value);
    }
    history.replaceState(null, "", `#/models/${encodeURIComponent(name)}?${q}`);
    shareInput.value = location.href;
  };

  const renderSample = async () => {
    const p = commonParams();
    p.set("seed", state.seed);
    p.set("n", state.n);
    const url = `${base}/samples.png?${p}`;
    openLink.href = url;
    const count = Number(state.n);
    const cls =
      state.label !== "" ? ` of class ${labelSelect.selectedOptions[0]?.textContent ?? state.label}` : "";
    sampleImg.alt =
      count > 1
        ? `A grid of ${count} samples of ${name}${cls}, seeds ${state.seed} onwards`
        : `A sample of ${name}${cls}, seed ${state.seed}`;
    sampleCaption.textContent = "Rendering…";
    const response = await showImage(sampleImg, url, {
      figure: sampleFigure,
      errorEl: sampleError,
      signal: ctx.signal,
    });
    if (response) {
      const version = response.headers.get("X-Model-Version");
      sampleCaption.textContent = `${name} v${version ?? "?"} · seed ${state.seed}${count > 1 ? ` + ${count - 1} more` : ""}${cls}`;
    } else if (sampleFigure.dataset.state === "error") {
      sampleCaption.textContent = "";
    }
  };

  // --- interpolation
  const seedBInput = numberInput("i-seed-b", "b", state.b, { min: "0", step: "1" });
  const stepsInput = numberInput("i-steps", "steps", state.steps, { min: "2", max: "64", step: "1" });
  const interpImg = h("img", { id: "interp-img", class: "pixelated", alt: "", hidden: true });
  const interpError = h("p", { id: "interp-error", class: "error", role: "alert" });
  const interpFigure = h("figure", { id: "interp-figure", class: "sample" }, interpImg);
  const renderInterpolation = async () => {
    const p = commonParams();
    p.set("seed_a", state.seed);
    p.set("seed_b", state.b);
    p.set("steps", state.steps);
    interpImg.alt = `${state.steps} images of ${name} from seed ${state.seed} to seed ${state.b}`;
    await showImage(interpImg, `${base}/interpolation.png?${p}`, {
      figure: interpFigure,
      errorEl: interpError,
      signal: ctx.signal,
    });
  };

  const refresh = () => {
    readState();
    writeHash();
    renderSample();
    renderInterpolation();
  };
  const refreshSoon = debounce(refresh, INPUT_DEBOUNCE_MS);
  ctx.onCleanup(refreshSoon.cancel);

  // --- bulk export
  const bulkCount = numberInput("b-n", "bulk-n", "100", { min: "1", step: "1" });
  const bulkFormat = h(
    "select",
    { id: "b-format", name: "format" },
    h("option", { value: "zip" }, "zip of PNGs + labels.csv"),
    h("option", { value: "npz" }, "npz (NumPy arrays)"),
  );
  const bulkStatus = h("p", { id: "bulk-status", class: "hint", "aria-live": "polite" });
  const bulkButton = h("button", { type: "submit", id: "b-download" }, "Download");
  const exportBulk = async (event) => {
    event.preventDefault();
    readState();
    const body = { n: Number(bulkCount.value || "0"), version: state.version, format: bulkFormat.value };
    const seedJson = /^\d+$/.test(state.seed) ? state.seed : JSON.stringify(state.seed);
    if (state.label !== "") body.labels = Number(state.label);
    if (state.truncation !== "") body.truncation = Number(state.truncation);
    // The seed goes in as written: seeds reach 2^63 - 1, past JavaScript's exact integers.
    const json = JSON.stringify(body).replace(/^\{/, `{"seed":${seedJson},`);
    bulkButton.disabled = true;
    bulkStatus.textContent = `Rendering ${body.n} images…`;
    try {
      const response = await request(`${base}/samples`, { method: "POST", json, signal: ctx.signal });
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const match = /filename="?([^";]+)"?/.exec(disposition);
      const filename = match ? match[1] : `${name}-samples.${bulkFormat.value}`;
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: filename, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      bulkStatus.textContent = `Downloaded ${filename} (${fmtBytes(blob.size)}).`;
    } catch (error) {
      if (!isAbort(error))
        bulkStatus.textContent =
          error instanceof ApiError ? error.explanation : `Export failed: ${error.message}`;
    } finally {
      bulkButton.disabled = false;
    }
  };

  const samplerForm = h(
    "form",
    { id: "sampler", class: "grid-form", novalidate: true, onsubmit: (e) => (e.preventDefault(), refresh()) },
    h("div", { class: "field" }, h("label", { for: "s-version" }, "Version"), versionSelect),
    h(
      "div",
      { class: "field" },
      h("label", { for: "s-seed" }, "Seed"),
      h(
        "div",
        { class: "inline" },
        seedInput,
        h(
          "button",
          { type: "button", id: "s-random", onclick: () => ((seedInput.value = randomSeed()), refresh()) },
          "Random seed",
        ),
      ),
    ),
    h("div", { class: "field" }, h("label", { for: "s-n" }, "Images"), nInput),
    labelField,
    h(
      "div",
      { class: "field" },
      h("label", { for: "s-truncation" }, "Truncation"),
      truncationInput,
      h("p", { id: "s-truncation-hint", class: "hint" }, "Empty = off; lower = more typical images."),
    ),
    h("div", { class: "field" }, h("label", { for: "s-scale" }, "Scale"), scaleInput),
    h("div", { class: "field actions" }, h("button", { type: "submit" }, "Show")),
  );
  for (const control of [seedInput, nInput, truncationInput, scaleInput, seedBInput, stepsInput]) {
    control.addEventListener("input", refreshSoon);
  }
  for (const control of [versionSelect, labelSelect]) {
    control.addEventListener("change", () => {
      if (control === versionSelect) updateLabels();
      refresh();
    });
  }

  const versionCards = [...model.versions].reverse().map((v) =>
    h(
      "article",
      { class: "card", "aria-labelledby": `v-${v.version}` },
      h(
        "h3",
        { id: `v-${v.version}` },
        `v${v.version} `,
        v.aliases.map((a) => h("span", { class: "tag" }, a)),
      ),
      h(
        "dl",
        { class: "pairs" },
        h("dt", {}, "Step"),
        h("dd", {}, v.step),
        h("dt", {}, "Dataset"),
        h("dd", {}, v.dataset ?? "–"),
        h("dt", {}, "Architecture"),
        h("dd", {}, v.architecture ?? "–"),
        h("dt", {}, "Image"),
        h("dd", {}, v.image_shape ? v.image_shape.join(" × ") : "–"),
        h("dt", {}, "Conditional"),
        h("dd", {}, v.conditional ? `yes: ${v.classes.join(", ")}` : "no"),
        h("dt", {}, "Noise"),
        h("dd", {}, v.noise ? `${v.noise.dim} × ${v.noise.distribution}` : "–"),
        h("dt", {}, "Created"),
        h("dd", {}, fmtTime(v.created_at)),
        h("dt", {}, "Job"),
        h("dd", {}, v.job_id ? h("a", { href: `#/jobs/${v.job_id}` }, v.job_id.slice(0, 8)) : "–"),
      ),
      titled("Metrics", v.metrics, "h4"),
    ),
  );

  root.append(
    heading(name),
    h(
      "p",
      { class: "hint" },
      `${model.versions.length} version${model.versions.length === 1 ? "" : "s"} · aliases: `,
      aliasList(model.aliases),
    ),
    h(
      "section",
      { "aria-labelledby": "sampler-h" },
      h("h2", { id: "sampler-h" }, "Sampler"),
      samplerForm,
      sampleFigure,
      sampleError,
      h(
        "div",
        { class: "field share" },
        h("label", { for: "s-share" }, "Shareable link"),
        h(
          "div",
          { class: "inline" },
          shareInput,
          h("button", { type: "button", id: "s-copy", onclick: () => copyShare(shareInput) }, "Copy link"),
        ),
        h(
          "p",
          { id: "s-share-hint", class: "hint" },
          "This page's address keeps the sampler's settings. ",
          openLink,
        ),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "interp-h" },
      h("h2", { id: "interp-h" }, "Interpolation"),
      h(
        "form",
        { class: "grid-form", novalidate: true, onsubmit: (e) => (e.preventDefault(), refresh()) },
        h(
          "p",
          { class: "hint wide" },
          "From the sampler's seed to a second seed, with its class, truncation and scale.",
        ),
        h("div", { class: "field" }, h("label", { for: "i-seed-b" }, "Second seed"), seedBInput),
        h("div", { class: "field" }, h("label", { for: "i-steps" }, "Frames"), stepsInput),
        h("div", { class: "field actions" }, h("button", { type: "submit" }, "Show")),
      ),
      interpFigure,
      interpError,
    ),
    h(
      "section",
      { "aria-labelledby": "bulk-h" },
      h("h2", { id: "bulk-h" }, "Bulk export"),
      h(
        "form",
        { class: "grid-form", novalidate: true, onsubmit: exportBulk },
        h(
          "p",
          { class: "hint wide" },
          "Images from the sampler's seed on (image i uses seed + i), with its version, class and truncation.",
        ),
        h("div", { class: "field" }, h("label", { for: "b-n" }, "Images"), bulkCount),
        h("div", { class: "field" }, h("label", { for: "b-format" }, "Format"), bulkFormat),
        h("div", { class: "field actions" }, bulkButton),
      ),
      bulkStatus,
    ),
    h(
      "section",
      { "aria-labelledby": "versions-h" },
      h("h2", { id: "versions-h" }, "Versions"),
      h("div", { class: "cards" }, versionCards),
    ),
  );
  updateLabels();
  refresh();
}

async function copyShare(input) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select(); // no clipboard access: leave it selected for the user to copy
  }
}

// --- jobs ----------------------------------------------------------------------------------

const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const JOBS_PER_PAGE = 25;

async function jobsView(ctx) {
  const root = ctx.root;
  const status = ctx.params.get("status") || "";
  const offset = Math.max(0, Number(ctx.params.get("offset") || 0) || 0);
  const filter = h(
    "select",
    { id: "jobs-status", name: "status" },
    h("option", { value: "" }, "All"),
    JOB_STATUSES.map((s) => h("option", { value: s }, s)),
  );
  filter.value = status;
  filter.addEventListener("change", () => {
    location.hash = filter.value ? `#/jobs?status=${filter.value}` : "#/jobs";
  });
  const tbody = h("tbody");
  const updated = h("p", { id: "jobs-updated", class: "hint", "aria-live": "off" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of jobs" });
  root.append(
    heading("Jobs"),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "jobs-status" }, "Status"), filter),
      h("a", { class: "button", href: "#/submit" }, "Train a model"),
    ),
    h(
      "table",
      { class: "list", id: "jobs-table" },
      h("caption", { class: "visually-hidden" }, "Training jobs, newest first"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Job", "Status", "Progress", "Created"].map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      tbody,
    ),
    pager,
    updated,
  );

  const load = async () => {
    const q = new URLSearchParams({ limit: String(JOBS_PER_PAGE), offset: String(offset) });
    if (status) q.set("status", status);
    const page = await getJSON(`v1/jobs?${q}`, { signal: ctx.signal });
    if (!page.items.length) {
      tbody.replaceChildren(
        h(
          "tr",
          {},
          h("td", { colspan: "4" }, "No jobs. ", h("a", { href: "#/submit" }, "Train a model"), "."),
        ),
      );
    } else {
      tbody.replaceChildren(...page.items.map(jobRow));
    }
    const link = (to, text) => {
      const q2 = new URLSearchParams();
      if (status) q2.set("status", status);
      if (to) q2.set("offset", String(to));
      return h("a", { href: `#/jobs${q2.size ? `?${q2}` : ""}` }, text);
    };
    pager.replaceChildren(
      ...[
        offset > 0 ? link(Math.max(0, offset - JOBS_PER_PAGE), "← Newer") : null,
        page.total ? h("span", {}, `${offset + 1}–${offset + page.items.length} of ${page.total}`) : null,
        offset + page.items.length < page.total ? link(offset + JOBS_PER_PAGE, "Older →") : null,
      ].filter(Boolean),
    );
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${JOBS_REFRESH_MS / 1000} s.`;
  };
  await load();
  const timer = setInterval(() => {
    if (!document.hidden)
      load().catch((error) => !isAbort(error) && (updated.textContent = `Refresh failed: ${error.message}`));
  }, JOBS_REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
}

function jobRow(job) {
  const p = job.progress;
  return h(
    "tr",
    { "data-job": job.id },
    cell(
      "Job",
      h("a", { href: `#/jobs/${job.id}` }, job.name),
      " ",
      h("code", { class: "id" }, job.id.slice(0, 8)),
    ),
    cell("Status", statusBadge(job.status)),
    cell(
      "Progress",
      h("progress", {
        max: String(p.total_steps || 1),
        value: String(p.step),
        "aria-label": `Progress of ${job.name} (${job.id.slice(0, 8)})`,
      }),
      job.phase === "preparing" ? " preparing" : ` ${p.step} / ${p.total_steps}`,
    ),
    cell("Created", fmtTime(job.created_at)),
  );
}

async function jobView(ctx) {
  const [id] = ctx.args;
  const base = `v1/jobs/${encodeURIComponent(id)}`;
  let job = await getJSON(base, { signal: ctx.signal });
  const root = ctx.root;

  const status = statusBadge(job.status, "job-status");
  const bar = h("progress", { id: "job-progress", max: "1", value: "0", "aria-labelledby": "progress-h" });
  const progressText = h("p", { id: "job-progress-text" });
  const live = h("p", { id: "job-live", class: "visually-hidden", "aria-live": "polite" });
  const streamState = h("p", { id: "job-stream", class: "hint" });
  const losses = h("div", { id: "job-losses" });
  const metrics = h("div", { id: "job-metrics" });
  const warnings = h("div", { id: "job-warnings" });
  const errorBox = h("div", { id: "job-error" });
  const modelBox = h("div", { id: "job-model" });
  const cancelButton = h("button", { type: "button", id: "job-cancel", class: "danger" }, "Cancel job");
  const cancelMessage = h("p", { id: "job-cancel-message", class: "hint", "aria-live": "polite" });
  const historyImg = h("img", {
    id: "history-img",
    alt: `Loss and metric curves of job ${id}`,
    hidden: true,
  });
  const historyError = h("p", { class: "hint" });
  const historyFigure = h("figure", { id: "history-figure", class: "plot" }, historyImg);
  const previewImg = h("img", {
    id: "preview-img",
    class: "pixelated",
    alt: `Fixed-noise preview grid of job ${id}`,
    hidden: true,
  });
  const previewError = h("p", { class: "hint" });
  const previewFigure = h("figure", { id: "preview-figure", class: "sample" }, previewImg);
  const previewCaption = h("figcaption", { class: "hint" });
  previewFigure.append(previewCaption);
  const specBox = h("pre", { class: "spec" });
  let events = 0;
  let lastLive = "";

  let preparing = null; // the latest `preparing` event while the job is preparing
  const showProgress = (step, total, stepsPerSec, eta) => {
    if (job.status === "running" && job.phase === "preparing") {
      // one-time work before the first step, e.g. the evaluation classifier
      bar.max = preparing ? preparing.total : 1;
      bar.value = preparing ? preparing.step : 0;
      progressText.textContent = preparing
        ? `Preparing: ${preparing.message}`
        : "Preparing: loading the dataset (the first job on a dataset also trains its evaluation classifier)…";
      if (lastLive !== "preparing") live.textContent = lastLive = "Job preparing";
      return;
    }
    bar.max = total || 1;
    bar.value = step;
    const pct = total ? Math.floor((100 * step) / total) : 0;
    const speed = stepsPerSec ? ` · ${fmtNumber(stepsPerSec)} steps/s` : "";
    const left =
      eta !== null && eta !== undefined && !TERMINAL.has(job.status) ? ` · ${fmtDuration(eta)} left` : "";
    progressText.textContent = `Step ${step} of ${total} (${pct}%)${speed}${left}`;
    // Announce the status, and the progress in tens of percent, not every step.
    const said = `${job.status}${job.status === "running" ? `, ${Math.floor(pct / 10) * 10}%` : ""}`;
    if (said !== lastLive) live.textContent = lastLive = `Job ${said}`;
  };

  const showJob = () => {
    status.textContent = job.status;
    status.className = `badge status-${job.status}`;
    const p = job.progress;
    showProgress(p.step, p.total_steps, p.steps_per_sec, p.eta_s);
    losses.replaceChildren(...titled("Losses", job.last_losses));
    metrics.replaceChildren(...titled("Metrics", job.latest_metrics));
    warnings.replaceChildren();
    if (job.warnings.length) {
      warnings.append(
        h(
          "div",
          { class: "warning", role: "status" },
          h("h3", {}, "Warnings"),
          h(
            "ul",
            {},
            job.warnings.map((w) => h("li", {}, w)),
          ),
        ),
      );
    }
    errorBox.replaceChildren(
      job.error ? h("p", { class: "error", role: "alert" }, `Failed: ${job.error}`) : "",
    );
    modelBox.replaceChildren(
      job.model
        ? h(
            "p",
            { class: "ok" },
            "Registered ",
            h(
              "a",
              {
                href: `#/models/${encodeURIComponent(job.model.name)}?version=${job.model.version}`,
                id: "job-model-link",
              },
              `${job.model.name} v${job.model.version}`,
            ),
            ": open it to sample.",
          )
        : "",
    );
    const finished = TERMINAL.has(job.status);
    cancelButton.hidden = finished;
    cancelButton.disabled = finished || job.cancel_requested;
    if (finished) cancelMessage.textContent = "";
    else if (job.cancel_requested)
      cancelMessage.textContent = "Cancel requested: the job stops at its next step.";
    specBox.textContent = JSON.stringify(job.spec, null, 2);
  };

  const reloadJob = async () => {
    job = await getJSON(base, { signal: ctx.signal });
    showJob();
  };

  const refreshPreview = () =>
    showImage(previewImg, `${base}/preview.png`, {
      figure: previewFigure,
      errorEl: previewError,
      signal: ctx.signal,
      cache: "no-cache",
      upscaleTo: 384,
      emptyMessage: TERMINAL.has(job.status)
        ? "This job wrote no preview."
        : `No preview yet: the first comes at step ${Math.min(job.spec.sample_every, job.spec.steps)}.`,
    }).then((response) => {
      if (response) previewCaption.textContent = `Preview as of step ${job.progress.step}`;
    });
  let historyAt = 0;
  let historyTimer = null;
  const refreshHistory = () => {
    clearTimeout(historyTimer);
    historyTimer = null;
    historyAt = Date.now();
    return showImage(historyImg, `${base}/history.png`, {
      figure: historyFigure,
      errorEl: historyError,
      signal: ctx.signal,
      cache: "no-cache",
    });
  };
  const refreshHistorySoon = () => {
    if (historyTimer) return;
    historyTimer = setTimeout(refreshHistory, Math.max(0, HISTORY_REFRESH_MS - (Date.now() - historyAt)));
  };
  ctx.onCleanup(() => clearTimeout(historyTimer));

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    cancelMessage.textContent = "Cancelling…";
    try {
      job = await getJSON(`${base}/cancel`, { method: "POST", signal: ctx.signal });
      cancelMessage.textContent = TERMINAL.has(job.status)
        ? `Job ${job.status}.`
        : "Cancel requested: the job stops at its next step.";
      showJob();
    } catch (error) {
      if (isAbort(error)) return;
      cancelMessage.textContent = error instanceof ApiError ? error.explanation : error.message;
      cancelButton.disabled = TERMINAL.has(job.status);
    }
  });

  root.append(
    heading(job.name, " ", status),
    h(
      "p",
      { class: "hint" },
      "Job ",
      h("code", { class: "id" }, job.id),
      ` · created ${fmtTime(job.created_at)}`,
    ),
    h(
      "section",
      { "aria-labelledby": "progress-h" },
      h("h2", { id: "progress-h" }, "Progress"),
      bar,
      progressText,
      live,
      streamState,
      errorBox,
      modelBox,
      warnings,
      h("div", { class: "pairs-row" }, losses, metrics),
      h("div", { class: "actions" }, cancelButton),
      cancelMessage,
    ),
    h(
      "section",
      { "aria-labelledby": "curves-h" },
      h("h2", { id: "curves-h" }, "Curves"),
      historyFigure,
      historyError,
    ),
    h(
      "section",
      { "aria-labelledby": "preview-h" },
      h("h2", { id: "preview-h" }, "Preview"),
      previewFigure,
      previewError,
    ),
    h("details", {}, h("summary", {}, "Training spec"), specBox),
  );
  showJob();
  refreshHistory();
  refreshPreview();
  if (TERMINAL.has(job.status)) {
    streamState.textContent = "Finished.";
    return;
  }

  // Live: the event stream; polling only if the browser gives up on it.
  const source = new EventSource(`${base}/events`);
  let pollTimer = null;
  const stop = () => {
    source.close();
    clearInterval(pollTimer);
  };
  ctx.onCleanup(stop);
  const counted = (fn) => (event) => {
    events += 1;
    streamState.dataset.events = String(events);
    streamState.textContent = `Live: following the event stream (${events} event${events === 1 ? "" : "s"}).`;
    let data = {};
    try {
      data = JSON.parse(event.data);
    } catch {
      /* keep {} */
    }
    fn(data);
  };
  source.addEventListener("open", () => {
    streamState.dataset.stream = "open";
    if (!events) streamState.textContent = "Live: following the event stream.";
  });
  source.addEventListener(
    "preparing",
    counted((d) => {
      job.status = "running";
      job.phase = "preparing";
      preparing = { step: d.step ?? 0, total: d.total || 1, message: d.message || "" };
      status.textContent = job.status;
      status.className = `badge status-${job.status}`;
      showProgress(0, job.progress.total_steps);
    }),
  );
  source.addEventListener(
    "progress",
    counted((d) => {
      job.progress.step = d.step ?? job.progress.step;
      job.phase = "training";
      if (job.status === "queued") job.status = "running";
      job.last_losses = d.losses || job.last_losses;
      job.progress.steps_per_sec = d.steps_per_sec;
      job.progress.eta_s = d.eta_s;
      showProgress(d.step, d.total_steps ?? job.progress.total_steps, d.steps_per_sec, d.eta_s);
      losses.replaceChildren(...titled("Losses", job.last_losses));
      refreshHistorySoon();
    }),
  );
  source.addEventListener(
    "preview",
    counted(() => refreshPreview()),
  );
  source.addEventListener(
    "checkpoint",
    counted((d) => (streamState.title = `Last checkpoint at step ${d.step}`)),
  );
  source.addEventListener(
    "model",
    counted(() => reloadJob().catch(() => {})),
  );
  source.addEventListener(
    "warning",
    counted(() => reloadJob().catch(() => {})),
  );
  // quality evaluations: new metric values and curves
  source.addEventListener(
    "evaluation",
    counted(() => {
      reloadJob().catch(() => {});
      refreshHistorySoon();
    }),
  );
  source.addEventListener(
    "status",
    counted(async (d) => {
      job.status = d.status || job.status;
      // claimed: preparing until the first step (a resumed job goes on from its checkpoint)
      job.phase = job.status !== "running" ? null : job.progress.step ? "training" : "preparing";
      status.textContent = job.status;
      status.className = `badge status-${job.status}`;
      if (TERMINAL.has(job.status)) {
        stop();
        // nothing left to cancel: hidden now, not after the reload below returns
        cancelButton.hidden = true;
        cancelButton.disabled = true;
        streamState.dataset.stream = "closed";
        streamState.textContent = `Finished (${events} events).`;
        await reloadJob().catch(() => {});
        refreshHistory();
        refreshPreview();
      } else {
        showJob();
      }
    }),
  );
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED || !ctx.active()) return; // it reconnects by itself
    streamState.dataset.stream = "polling";
    streamState.textContent = "The event stream is unavailable: checking every few seconds.";
    pollTimer = setInterval(async () => {
      try {
        await reloadJob();
        refreshHistorySoon();
        if (TERMINAL.has(job.status)) {
          clearInterval(pollTimer);
          refreshPreview();
          streamState.textContent = "Finished.";
        }
      } catch {
        /* try again */
      }
    }, JOBS_REFRESH_MS);
  });
}

// --- submitting a training job -------------------------------------------------------------

/**
 * The TrainSpec's fields from the OpenAPI document, flattened: noise.dim, betas.0, ...
 * Everything shown comes from the schema, which the server builds from its one declaration
 * of the training config: the label is the field's `title`, the hint its `description`, the
 * bounds `minimum`/`exclusiveMinimum`/`maximum`, the choices `enum`; `x-basic` fields come
 * before "More settings".
 */
function specFields(openapi) {
  const schemas = openapi.components.schemas;
  const deref = (schema) => (schema && schema.$ref ? schemas[schema.$ref.split("/").pop()] : schema);
  const fields = [];
  const visit = (properties, prefix) => {
    for (const [key, raw] of Object.entries(properties)) {
      const path = prefix ? `${prefix}.${key}` : key;
      const schema = deref(raw);
      const description = raw.description || schema.description || "";
      if (schema.type === "object" && schema.properties) {
        visit(schema.properties, path);
        continue;
      }
      // A fixed-length tuple (betas): the document writes its members as `items.anyOf`, one
      // per distinct member schema (service/openapi.py), or as `prefixItems`.
      const members =
        schema.type === "array"
          ? schema.prefixItems ||
            (schema.items && schema.minItems === schema.maxItems ? schema.items.anyOf || [schema.items] : null)
          : null;
      if (members) {
        const length = schema.prefixItems ? members.length : schema.maxItems;
        Array.from({ length }, (_, i) => members[Math.min(i, members.length - 1)]).forEach((item, i) => {
          fields.push({
            path: `${path}.${i}`,
            type: item.type,
            default: (raw.default || schema.default || [])[i],
            minimum: item.minimum ?? item.exclusiveMinimum,
            maximum: item.maximum,
            description: item.description || description,
            title: item.title,
            basic: Boolean(item["x-basic"]),
            tuple: path,
          });
        });
        continue;
      }
      const nullable = Array.isArray(schema.anyOf);
      const type = nullable ? (schema.anyOf.find((s) => s.type !== "null") || {}).type : schema.type;
      if (!["string", "integer", "number", "boolean"].includes(type)) continue;
      fields.push({
        path,
        type,
        enum: schema.enum,
        default: raw.default !== undefined ? raw.default : schema.default,
        minimum: schema.minimum ?? schema.exclusiveMinimum,
        maximum: schema.maximum,
        pattern: schema.pattern,
        nullable,
        description,
        title: raw.title || schema.title,
        basic: Boolean(raw["x-basic"] || schema["x-basic"]),
      });
    }
  };
  visit(deref(schemas.TrainSpec).properties, "");
  return fields;
}

const fieldId = (path) => `f-${path.replace(/\./g, "-")}`;

function fieldControl(field, datasets) {
  const id = fieldId(field.path);
  const describedBy = `${id}-hint ${id}-error`;
  const common = { id, name: field.path, "aria-describedby": describedBy };
  if (field.path === "dataset" && datasets) {
    const select = h(
      "select",
      common,
      datasets.map((d) =>
        h(
          "option",
          { value: d.name, disabled: !d.available },
          `${d.name}: ${d.image_size} px${d.channels === 3 ? " RGB" : ""}${d.num_classes ? `, ${d.num_classes} classes` : ""}, ${Number(d.size).toLocaleString("en")} images${d.available ? "" : " (files missing)"}`,
        ),
      ),
    );
    select.value = field.default;
    return select;
  }
  if (field.enum) {
    const select = h(
      "select",
      common,
      field.enum.map((v) => h("option", { value: v }, v)),
    );
    select.value = field.default;
    return select;
  }
  if (field.type === "boolean")
    return h("input", { ...common, type: "checkbox", checked: Boolean(field.default) });
  if (field.type === "integer" || field.type === "number") {
    return h("input", {
      ...common,
      type: "number",
      step: field.type === "integer" ? "1" : "any",
      min: field.minimum !== undefined && field.minimum < 1e15 ? String(field.minimum) : null,
      max: field.maximum !== undefined && field.maximum < 1e15 ? String(field.maximum) : null,
      inputmode: field.type === "integer" ? "numeric" : "decimal",
      value: field.default === undefined || field.default === null ? "" : String(field.default),
    });
  }
  const input = h("input", {
    ...common,
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    value: field.default ?? "",
  });
  if (field.nullable && (field.default === null || field.default === undefined))
    input.placeholder = "(automatic)";
  if (field.path === "device") {
    input.setAttribute("list", "device-choices");
    return [
      input,
      h(
        "datalist",
        { id: "device-choices" },
        ["auto", "cpu", "cuda", "cuda:0"].map((v) => h("option", { value: v })),
      ),
    ];
  }
  return input;
}

function fieldBlock(field, datasets) {
  const id = fieldId(field.path);
  const label = field.title || field.path;
  const control = fieldControl(field, datasets);
  const checkbox = field.type === "boolean";
  return h(
    "div",
    { class: `field${checkbox ? " check" : ""}`, "data-field": field.path },
    checkbox ? [control, h("label", { for: id }, label)] : [h("label", { for: id }, label), control],
    h(
      "p",
      { id: `${id}-hint`, class: "hint" },
      field.description,
      field.default !== undefined && field.default !== null && !checkbox ? ` Default: ${field.default}.` : "",
    ),
    h("p", { id: `${id}-error`, class: "error field-error" }),
  );
}

/** The spec's JSON from the form; integers are written as typed (seeds pass 2^53). */
function specJson(fields, form) {
  const spec = {};
  const raw = new Map();
  let counter = 0;
  const set = (path, value) => {
    const parts = path.split(".");
    let target = spec;
    parts.slice(0, -1).forEach((part, i) => {
      const nextIsIndex = /^\d+$/.test(parts[i + 1]);
      target[part] = target[part] ?? (nextIsIndex ? [] : {});
      target = target[part];
    });
    target[parts.at(-1)] = value;
  };
  for (const field of fields) {
    const control = form.elements.namedItem(field.path);
    if (!control) continue;
    if (field.type === "boolean") {
      set(field.path, control.checked);
      continue;
    }
    const text = control.value.trim();
    if (text === "") {
      if (field.tuple) set(field.path, field.default); // a pair is sent whole
      continue; // unset: the server's default
    }
    if (field.type === "integer" && /^-?\d+$/.test(text)) {
      const token = `\u0000int${counter++}\u0000`;
      raw.set(JSON.stringify(token), text.replace(/^(-?)0+(?=\d)/, "$1"));
      set(field.path, token);
    } else if (field.type === "integer" || field.type === "number") {
      const number = Number(text);
      set(field.path, Number.isFinite(number) ? number : text); // the server names what is wrong
    } else {
      set(field.path, text);
    }
  }
  let json = JSON.stringify(spec);
  for (const [token, digits] of raw) json = json.replace(token, digits);
  return json;
}

async function submitView(ctx) {
  const [openapi, datasets] = await Promise.all([
    getJSON("openapi.json", { signal: ctx.signal }),
    getJSON("v1/datasets", { signal: ctx.signal }).then(
      (d) => d.items,
      () => null,
    ),
  ]);
  const fields = specFields(openapi);
  const root = ctx.root;
  const formError = h("div", { id: "submit-error", class: "error", role: "alert" });
  const submitButton = h("button", { type: "submit", id: "submit-button" }, "Start training");
  const advanced = h(
    "details",
    { id: "advanced" },
    h("summary", {}, "More settings"),
    h(
      "div",
      { class: "fields" },
      fields.filter((f) => !f.basic).map((f) => fieldBlock(f, datasets)),
    ),
  );
  const form = h(
    "form",
    { id: "submit-form", novalidate: true, "aria-describedby": "submit-intro" },
    h(
      "div",
      { class: "fields" },
      fields.filter((f) => f.basic).map((f) => fieldBlock(f, datasets)),
    ),
    advanced,
    formError,
    h(
      "div",
      { class: "actions" },
      submitButton,
      h("button", { type: "reset", id: "reset-button" }, "Reset to defaults"),
    ),
  );
  const clearErrors = () => {
    formError.textContent = "";
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  };
  form.addEventListener("reset", clearErrors);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    submitButton.disabled = true;
    try {
      const response = await request("v1/jobs", {
        method: "POST",
        json: specJson(fields, form),
        signal: ctx.signal,
        idempotencyKey: crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`,
      });
      const job = await response.json();
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      if (isAbort(error)) return;
      if (!(error instanceof ApiError)) {
        formError.textContent = `Could not submit: ${error.message}`;
        return;
      }
      const problems =
        error.status === 422 && Array.isArray(error.problem.errors) && error.problem.errors.length
          ? error.problem.errors
          : [{ field: error.field, message: error.message }];
      let first = null;
      const unplaced = [];
      for (const { field, message } of problems) {
        const path = field ? [field, `${field}.0`].find((p) => form.elements.namedItem(p)) : null;
        const control = path ? byId(fieldId(path)) : null;
        if (!control || error.status !== 422) {
          unplaced.push(error.status === 422 && field ? `${field}: ${message}` : error.explanation);
          continue;
        }
        const text = message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
        byId(`${fieldId(path)}-error`).textContent = text;
        control.setAttribute("aria-invalid", "true");
        if (control.closest("details")) control.closest("details").open = true;
        first = first || control;
      }
      formError.textContent = unplaced.length
        ? unplaced.join(" ")
        : error.status === 422
          ? "Please correct the marked field."
          : "";
      if (first) first.focus();
    } finally {
      submitButton.disabled = false;
    }
  });
  root.append(
    heading("Train a model"),
    h(
      "p",
      { id: "submit-intro", class: "hint" },
      "Every field starts at the server's default (read from its OpenAPI document). The job registers a version of the named model when it finishes.",
    ),
    form,
  );
}

// --- start ---------------------------------------------------------------------------------

setupKeyForm();
window.addEventListener("hashchange", () => route());
if (!location.hash || location.hash === "#" || location.hash === "#/")
  history.replaceState(null, "", "#/models");
route({ focus: false });
