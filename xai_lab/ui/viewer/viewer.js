// The case viewer (xai_lab/ui/viewer.py). Panzoom (vendored above this file) zooms and pans a
// canvas; the canvas applies window/level to the radiograph's grey values and then draws the
// AI's map layer on top, so changing the contrast never recolours the map. Every action is
// counted and reported once the reader pauses, so the study can log "looked closely" without a
// server round trip per wheel tick. Attention telemetry rides on the same report: how long the tab
// was hidden and the window without focus while the step was on screen, and the viewport's size.

const ZOOM_STEP = 0.25; // Panzoom's relative step: 1.25x per press
const MAX_ZOOM = 8;
const PAN_STEP_PX = 40;
const REPORT_AFTER_MS = 600;
const MIN_CANVAS_PX = 512; // the map layer's outline stays sharp on small native images
const MAX_CANVAS_PX = 1024;

export default function ({ data, parentElement, setStateValue }) {
  let viewer = parentElement.__xaiViewer;
  if (!viewer || viewer.id !== data.id) {
    viewer = createViewer(parentElement, data, setStateValue);
    parentElement.__xaiViewer = viewer; // reruns (slider, toggle) keep the zoom and contrast
  }
  viewer.update(data);
}

function element(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function loadImage(source) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the image did not load"));
    image.src = source;
  });
}

function createViewer(root, data, setStateValue) {
  root.replaceChildren();
  const style = document.createElement("style");
  style.textContent = VIEWER_CSS; // defined just above this file by xai_lab/ui/viewer.py
  root.append(style);
  const words = data.labels; // in the study's language (xai_lab/ui/viewer.py)
  const frame = element("div", "viewer", { role: "group", "aria-label": words.viewer });
  const panes = element("div", data.side_by_side ? "panes two" : "panes");
  const tools = element("div", "tools");
  frame.append(panes, tools);
  root.append(frame);

  const state = {
    id: data.id, base: null, layer: null, layerSource: null, layerVisible: true,
    preset: 0, windowed: document.createElement("canvas"), grey: null, reportTimer: null,
    activity: { zoom_actions: 0, pan_actions: 0, window_changes: 0, resets: 0, max_zoom: 1, window: "",
      hidden_ms: 0, blurred_ms: 0, viewport_width: window.innerWidth, viewport_height: window.innerHeight },
    hiddenSince: document.hidden ? performance.now() : null,
    blurredSince: document.hasFocus() ? null : performance.now(),
  };
  watchAttention();
  const views = (data.side_by_side ? [false, true] : [true]).map((withLayer) => createPane(panes, withLayer));
  let syncing = false;
  for (const view of views) {
    view.stage.addEventListener("panzoomchange", (event) => {
      state.activity.max_zoom = Math.max(state.activity.max_zoom, Math.round(event.detail.scale * 100) / 100);
      if (syncing) return;
      syncing = true; // side by side: both panes show the same region
      // The follower copies the leader's clamped values as they are (contain: false). Clamping them again
      // would measure the follower's box, whose new transform Panzoom applies only in the next animation
      // frame, so quick key presses could leave the two panes on slightly different regions.
      const copy = { animate: false, silent: true, contain: false };
      for (const other of views) {
        if (other !== view) {
          other.zoom.zoom(event.detail.scale, copy);
          other.zoom.pan(event.detail.x, event.detail.y, copy);
        }
      }
      syncing = false;
    });
    let start = null;
    view.stage.addEventListener("panzoomstart", (event) => { start = { x: event.detail.x, y: event.detail.y }; });
    view.stage.addEventListener("panzoomend", (event) => {
      // a drag that moved the image, not a click on it
      if (start && (event.detail.x !== start.x || event.detail.y !== start.y)) count("pan_actions");
      start = null;
    });
    view.pane.addEventListener("wheel", (event) => {
      view.zoom.zoomWithWheel(event);
      count("zoom_actions");
    }, { passive: false });
    view.pane.addEventListener("keydown", (event) => onKey(event, view));
  }

  const buttons = [
    button(tools, "+", words.zoom_in, () => { views[0].zoom.zoomIn(); count("zoom_actions"); }),
    button(tools, "\u2212", words.zoom_out, () => { views[0].zoom.zoomOut(); count("zoom_actions"); }),
  ];
  const label = element("span", "label");
  label.textContent = words.contrast;
  tools.append(label);
  const presetButtons = data.presets.map((preset, index) =>
    button(tools, preset.label, words.preset.replace("{label}", preset.label).replace("{key}", String(index + 1)),
      () => choosePreset(index)));
  buttons.push(...presetButtons,
    button(tools, words.reset, words.reset_name, () => resetView()));
  if (data.heatmap_legend) {
    const legend = element("span", "legend", { "aria-hidden": "true" });
    const less = element("span"), ramp = element("span", "ramp"), more = element("span");
    less.textContent = words.less;
    more.textContent = words.more;
    legend.append(less, ramp, more);
    tools.append(legend);
  }

  function button(parent, text, name, action) {
    const node = element("button", "tool", { type: "button", "aria-label": name, title: name });
    node.textContent = text;
    node.addEventListener("click", action);
    parent.append(node);
    return node;
  }

  function onKey(event, view) {
    const keys = {
      "+": () => { view.zoom.zoomIn(); count("zoom_actions"); },
      "=": () => { view.zoom.zoomIn(); count("zoom_actions"); },
      "-": () => { view.zoom.zoomOut(); count("zoom_actions"); },
      ArrowLeft: () => panBy(PAN_STEP_PX, 0), ArrowRight: () => panBy(-PAN_STEP_PX, 0),
      ArrowUp: () => panBy(0, PAN_STEP_PX), ArrowDown: () => panBy(0, -PAN_STEP_PX),
      0: () => resetView(),
    };
    data.presets.forEach((_, index) => { keys[String(index + 1)] = () => choosePreset(index); });
    const action = keys[event.key];
    if (!action) return;
    event.preventDefault();
    action();
    function panBy(dx, dy) {
      view.zoom.pan(dx / view.zoom.getScale(), dy / view.zoom.getScale(), { relative: true });
      count("pan_actions");
    }
  }

  function choosePreset(index) {
    if (index !== state.preset) {
      state.preset = index;
      count("window_changes");
      applyWindow();
      draw();
    }
  }

  function resetView() {
    views[0].zoom.reset({ animate: false });
    state.preset = 0;
    applyWindow();
    draw();
    count("resets");
  }

  function count(what) {
    state.activity[what] += 1;
    report();
  }

  function report(after = REPORT_AFTER_MS) {
    state.activity.window = data.presets[state.preset].label;
    clearTimeout(state.reportTimer);
    state.reportTimer = setTimeout(() => setStateValue("activity", { ...state.activity }), after);
  }

  // One set of page listeners per mounted viewer: a new step's viewer takes them over (AbortController),
  // so a hidden tab is counted once, on the step on screen.
  function watchAttention() {
    root.__xaiAttention?.abort();
    const listening = new AbortController();
    root.__xaiAttention = listening;
    const options = { signal: listening.signal };
    // Event by event: during a "blur" event document.hasFocus() may still say true
    const away = (what) => { if (state[what] === null) state[what] = performance.now(); };
    const back = (what, total) => {
      if (state[what] === null) return;
      state.activity[total] += Math.round(performance.now() - state[what]);
      state[what] = null;
      report(); // the reader is back: the step's record learns how long they were away
    };
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) away("hiddenSince"); else back("hiddenSince", "hidden_ms");
    }, options);
    window.addEventListener("blur", () => away("blurredSince"), options);
    window.addEventListener("focus", () => back("blurredSince", "blurred_ms"), options);
    window.addEventListener("resize", () => {
      state.activity.viewport_width = window.innerWidth;
      state.activity.viewport_height = window.innerHeight;
    }, options);
  }

  function applyWindow() {
    const { centre, width } = data.presets[state.preset];
    const low = centre - width / 2;
    const context = state.windowed.getContext("2d");
    const pixels = context.createImageData(state.windowed.width, state.windowed.height);
    for (let i = 0, p = 0; i < state.grey.length; i += 1, p += 4) {
      const value = Math.min(255, Math.max(0, ((state.grey[i] - low) / width) * 255));
      pixels.data[p] = pixels.data[p + 1] = pixels.data[p + 2] = value;
      pixels.data[p + 3] = 255;
    }
    context.putImageData(pixels, 0, 0);
    presetButtons.forEach((node, index) => node.setAttribute("aria-pressed", String(index === state.preset)));
    frame.dataset.window = data.presets[state.preset].label;
  }

  function draw() {
    if (!state.base) return;
    for (const view of views) {
      const context = view.canvas.getContext("2d");
      context.imageSmoothingEnabled = true;
      context.imageSmoothingQuality = "high";
      context.drawImage(state.windowed, 0, 0, view.canvas.width, view.canvas.height);
      if (view.withLayer && state.layer && state.layerVisible) {
        context.drawImage(state.layer, 0, 0, view.canvas.width, view.canvas.height);
      }
    }
    frame.dataset.ready = "true"; // browser tests wait for this before reading pixels
  }

  async function setBase(source) {
    const image = await loadImage(source);
    const grey = document.createElement("canvas");
    grey.width = image.naturalWidth;
    grey.height = image.naturalHeight;
    const context = grey.getContext("2d");
    context.drawImage(image, 0, 0);
    const rgba = context.getImageData(0, 0, grey.width, grey.height).data;
    state.grey = new Uint8ClampedArray(grey.width * grey.height);
    for (let i = 0; i < state.grey.length; i += 1) state.grey[i] = rgba[4 * i];
    state.windowed.width = grey.width;
    state.windowed.height = grey.height;
    const side = Math.min(MAX_CANVAS_PX, Math.max(MIN_CANVAS_PX, image.naturalWidth));
    for (const view of views) {
      view.canvas.width = side;
      view.canvas.height = Math.round(side * image.naturalHeight / image.naturalWidth);
    }
    state.base = image;
    applyWindow();
  }

  const ready = setBase(data.base);
  // Every step's record gets the viewport (and zero hidden time) even untouched. Sent as soon as the
  // image is drawn: its rerun then lands while the reader is still looking, not as they move the
  // slider or decide (on a loaded machine, Chromium tests saw a slider move made during that rerun lost).
  ready.then(() => report(0));
  return {
    id: data.id,
    async update(next) {
      state.layerVisible = Boolean(next.layer_visible);
      if (next.layer !== state.layerSource) {
        state.layerSource = next.layer;
        state.layer = next.layer ? await loadImage(next.layer) : null;
      }
      await ready;
      draw();
    },
  };
}

function createPane(parent, withLayer) {
  const name = withLayer ? "Image with the AI's map" : "Image as it is";
  const pane = element("div", "pane", {
    tabindex: "0", role: "img",
    "aria-label": `${name}. Plus and minus zoom, arrow keys pan, number keys change the contrast, 0 resets.`,
  });
  const stage = element("div", "stage");
  const canvas = element("canvas");
  stage.append(canvas);
  pane.append(stage);
  parent.append(pane);
  // globalThis.Panzoom: the vendored UMD build above registers itself there
  const zoom = globalThis.Panzoom(stage, { maxScale: MAX_ZOOM, minScale: 1, step: ZOOM_STEP, contain: "outside",
                                           cursor: "grab" });
  return { pane, stage, canvas, zoom, withLayer };
}
