// Lightbox: small enhancements. Every page works without them.
"use strict";

// Copy buttons: <button data-copy="element-id" hidden> (shown only when this runs).
function setUpCopyButtons(root) {
  root.querySelectorAll("[data-copy]").forEach((button) => {
    if (!navigator.clipboard || button.dataset.ready) return;
    button.dataset.ready = "1";
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      await navigator.clipboard.writeText(source.innerText.trim());
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  });
}

// Forms with data-confirm, and buttons with data-confirm-button, ask first.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const message = (button && button.dataset.confirmButton) || (event.target.dataset && event.target.dataset.confirm);
  if (message && !window.confirm(message)) event.preventDefault();
}, true);

// Escape closes an open report form (a <details>) and puts focus back on its summary.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !(event.target instanceof Element)) return;
  const details = event.target.closest("details.report-details[open]");
  if (!details) return;
  details.open = false;
  details.querySelector("summary").focus();
});

// The mask painter: paint on the chosen image; white is redrawn. The mask goes
// into the hidden mask_painted field as a PNG data URI. Each stroke can be
// undone (the button, or Ctrl/Cmd+Z with the focus in the painter).
function setUpMaskPainter(root) {
  const painter = root.querySelector("[data-mask-painter]");
  const imageInput = root.querySelector("input[type=file][name=image]");
  const hidden = root.querySelector("input[name=mask_painted]");
  if (!painter || !imageInput || !hidden || painter.dataset.ready) return;
  painter.dataset.ready = "1";
  const canvas = painter.querySelector("canvas");
  const context = canvas.getContext("2d");
  const brush = painter.querySelector("[data-mask-brush]");
  const mask = document.createElement("canvas");
  const maskContext = mask.getContext("2d");
  const undoButton = painter.querySelector("[data-mask-undo]");
  const strokes = [];  // the mask before each stroke, and whether it was painted
  const MAX_UNDO = 30;
  let picture = null;
  let painting = false;
  let painted = false;

  function save() {
    hidden.value = painted ? mask.toDataURL("image/png") : "";
    undoButton.disabled = strokes.length === 0;
  }

  function undo() {
    const before = strokes.pop();
    if (!before) return;
    maskContext.putImageData(before.pixels, 0, 0);
    painted = before.painted;
    redraw();
    save();
  }

  function redraw() {
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(picture, 0, 0);
    context.globalAlpha = 0.55;
    context.drawImage(mask, 0, 0);
    context.globalAlpha = 1;
  }

  function clear() {
    if (painted) remember();
    maskContext.fillStyle = "#000";
    maskContext.fillRect(0, 0, mask.width, mask.height);
    painted = false;
    if (picture) redraw();
    save();
  }

  function remember() {
    strokes.push({ pixels: maskContext.getImageData(0, 0, mask.width, mask.height), painted });
    if (strokes.length > MAX_UNDO) strokes.shift();
  }

  function paint(event) {
    const box = canvas.getBoundingClientRect();
    const scale = canvas.width / box.width;
    const x = (event.clientX - box.left) * scale;
    const y = (event.clientY - box.top) * scale;
    maskContext.fillStyle = "#fff";
    maskContext.beginPath();
    maskContext.arc(x, y, (Number(brush.value) / 2) * scale, 0, Math.PI * 2);
    maskContext.fill();
    painted = true;
    redraw();
  }

  // The picture to paint on: a chosen file, or the image kept from before (a
  // remix, a form that came back); a mask painted before is put back on it.
  let loads = 0;
  function load(url, restore) {
    // Only the latest picture counts (a large file is replaced by its scaled copy).
    const mine = ++loads;
    picture = new Image();
    picture.onload = () => {
      if (mine !== loads) return;
      canvas.width = mask.width = picture.naturalWidth;
      canvas.height = mask.height = picture.naturalHeight;
      strokes.length = 0;
      painted = false;
      clear();
      painter.hidden = false;
      if (!restore) return;
      const before = new Image();
      before.onload = () => {
        maskContext.drawImage(before, 0, 0, mask.width, mask.height);
        painted = true;
        redraw();
        save();
      };
      before.src = restore;
    };
    picture.src = url;
  }

  imageInput.addEventListener("change", () => {
    const file = imageInput.files[0];
    if (!file) { painter.hidden = true; return; }
    load(URL.createObjectURL(file), null);
  });
  const kept = root.querySelector("input[name=image_kept]");
  if (kept && kept.value) load(kept.value, hidden.value || null);
  canvas.addEventListener("pointerdown", (event) => {
    remember();
    painting = true;
    canvas.setPointerCapture(event.pointerId);
    paint(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (painting) paint(event); });
  canvas.addEventListener("pointerup", () => {
    painting = false;
    save();
  });
  painter.querySelector("[data-mask-clear]").addEventListener("click", clear);
  undoButton.addEventListener("click", undo);
  painter.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    }
  });
}

// The full-size view of a prediction's images (a :target overlay that works
// without JavaScript): with it, "Fit to screen" or a click on the image
// toggles fitting, the arrow keys go to the previous or next image, and
// Escape closes it.
function setUpZoom(root) {
  const views = [...root.querySelectorAll(".zoom")];
  views.forEach((view, index) => {
    if (view.dataset.ready) return;
    view.dataset.ready = "1";
    const fit = view.querySelector("[data-zoom-fit]");
    const toggle = () => {
      const fitted = view.classList.toggle("fit");
      fit.textContent = fitted ? "Actual size" : "Fit to screen";
    };
    fit.hidden = false;
    fit.addEventListener("click", toggle);
    view.querySelector("img").addEventListener("click", toggle);
    if (views.length > 1) {
      const tools = view.querySelector(".zoom-tools");
      const step = (offset, label) => {
        const link = document.createElement("a");
        link.href = "#" + views[(index + offset + views.length) % views.length].id;
        link.textContent = label;
        link.dataset.zoomStep = String(offset);
        return link;
      };
      tools.prepend(step(-1, "← Previous"), step(1, "Next →"));
    }
  });
}

document.addEventListener("keydown", (event) => {
  const open = location.hash.startsWith("#zoom-") && document.querySelector(location.hash + ".zoom");
  if (!open) return;
  if (event.key === "Escape") {
    location.hash = "#result";
  } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    const link = open.querySelector(`[data-zoom-step="${event.key === "ArrowLeft" ? -1 : 1}"]`);
    if (link) location.hash = link.getAttribute("href");
  }
});

// The moderation queue by keyboard: J/K move between items; A, H, N and D
// decide on the item with the focus (D asks again on a page of its own).
// A decision needs a reason: without one the browser says so at the reason
// field, and Enter there then takes the decision that was asked for.
const DECISION_KEYS = { a: "approve", h: "hide", n: "nsfw", d: "delete" };

function reviewItems() { return [...document.querySelectorAll("[data-review]")]; }

function decide(form, decision) {
  const reason = form.querySelector("[data-reason]");
  form.dataset.pending = decision;
  if (!reason.value.trim()) {
    reason.focus();
    reason.reportValidity();
    return;
  }
  form.requestSubmit(form.querySelector(`button[value="${decision}"]`));
}

document.addEventListener("keydown", (event) => {
  if (!document.querySelector("[data-reviews]") || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target instanceof Element ? event.target : document.body;
  const item = target.closest("[data-review]");
  if (target.matches("[data-reason]")) {
    const form = target.form;
    if (event.key === "Enter") {
      event.preventDefault();
      if (form.dataset.pending) decide(form, form.dataset.pending);
    } else if (event.key === "Escape") {
      item.focus();
    }
    return;
  }
  if (target.closest("input, textarea, select, [contenteditable]")) return;
  const items = reviewItems();
  const key = event.key.toLowerCase();
  if (key === "j" || key === "k") {
    const index = items.indexOf(item);
    const next = items[Math.max(0, Math.min(items.length - 1, index + (key === "j" ? 1 : -1)))];
    if (next) { event.preventDefault(); next.focus(); next.scrollIntoView({ block: "nearest" }); }
  } else if (DECISION_KEYS[key] && (item || items[0])) {
    event.preventDefault();
    decide((item || items[0]).querySelector("form[data-decision]"), DECISION_KEYS[key]);
  }
});


// Image inputs (data-image-drop): drop or paste an image, see it before
// sending; an image past the size limits is scaled down here first, and
// what is not an image is refused at once. The server checks it all again.
function megabytes(bytes) { return Math.floor(bytes / (1024 * 1024)); }

function toBlob(canvas, type, quality) {
  return new Promise((resolve) => canvas.toBlob(resolve, type, quality));
}

async function fitImage(file, maxBytes, maxPixels) {
  if (!file.type.startsWith("image/")) throw new Error("Choose an image file (PNG, JPEG or WEBP).");
  const bitmap = await createImageBitmap(file).catch(() => { throw new Error("This image cannot be read."); });
  const pixels = bitmap.width * bitmap.height;
  if (pixels <= maxPixels && file.size <= maxBytes) return file;
  const scale = Math.min(1, Math.sqrt(maxPixels / pixels));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.floor(bitmap.width * scale));
  canvas.height = Math.max(1, Math.floor(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  let blob = await toBlob(canvas, "image/png");
  if (blob.size > maxBytes) blob = await toBlob(canvas, "image/jpeg", 0.92);
  if (blob.size > maxBytes) throw new Error(`Still larger than ${megabytes(maxBytes)} MB when scaled down: choose a smaller image.`);
  const name = file.name.replace(/\.[^.]*$/, "") + (blob.type === "image/png" ? ".png" : ".jpg");
  return new File([blob], name, { type: blob.type });
}

function setUpImageInputs(root) {
  root.querySelectorAll("[data-image-drop]").forEach((zone) => {
    if (zone.dataset.ready) return;
    zone.dataset.ready = "1";
    zone.querySelectorAll("[data-js-only]").forEach((element) => { element.hidden = false; });
    const input = zone.querySelector("input[type=file]");
    const error = zone.querySelector("[data-image-error]");
    const preview = zone.querySelector("[data-image-preview]");
    const maxBytes = Number(zone.dataset.maxBytes);
    const maxPixels = Number(zone.dataset.maxPixels);
    let assigning = false;
    async function take(file) {
      error.hidden = true;
      try {
        const fitted = await fitImage(file, maxBytes, maxPixels);
        if (input.files[0] !== fitted) {
          const transfer = new DataTransfer();
          transfer.items.add(fitted);
          input.files = transfer.files;
          // Others (the mask painter) hear of the new file; this handler does not again.
          assigning = true;
          input.dispatchEvent(new Event("change", { bubbles: true }));
          assigning = false;
        }
        preview.querySelector("img").src = URL.createObjectURL(fitted);
        preview.hidden = false;
      } catch (problem) {
        input.value = "";
        error.textContent = problem.message;
        error.hidden = false;
      }
    }
    input.addEventListener("change", () => { if (!assigning && input.files[0]) take(input.files[0]); });
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dropping"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dropping");
      if (event.dataTransfer.files[0]) take(event.dataTransfer.files[0]);
    });
    zone.imageTake = take;
    // After the fields were swapped, what moved over shows again.
    const kept = zone.querySelector("input[name$=_kept]");
    if (input.files[0]) take(input.files[0]);
    else if (kept && kept.value && preview.hidden) {
      preview.querySelector("img").src = kept.value;
      preview.hidden = false;
    }
  });
}

// A pasted image goes to the first image input of the playground.
document.addEventListener("paste", (event) => {
  const zone = document.querySelector("[data-image-drop]");
  const file = event.clipboardData && [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (!zone || !file || !zone.imageTake) return;
  event.preventDefault();
  const details = zone.closest("details");
  if (details) details.open = true;
  zone.imageTake(file);
});

// Aspect-ratio presets: keep the longer side, round to multiples of 8.
function setUpPresets(root) {
  const presets = root.querySelector("[data-presets]");
  const width = root.querySelector("input[name=width]");
  const height = root.querySelector("input[name=height]");
  if (!presets || !width || !height || presets.dataset.ready) return;
  presets.dataset.ready = "1";
  presets.hidden = false;
  const current = (input) => Number(input.value) || Number((input.placeholder.match(/\d+/) || [512])[0]);
  const fit = (input, value) => {
    let size = Math.max(8, Math.round(value / 8) * 8);
    if (input.max) size = Math.min(size, Number(input.max));
    if (input.min) size = Math.max(size, Number(input.min));
    return size;
  };
  presets.querySelectorAll("[data-preset]").forEach((button) => {
    button.addEventListener("click", () => {
      const [a, b] = button.dataset.preset.split(":").map(Number);
      const long = Math.max(current(width), current(height));
      width.value = fit(width, a >= b ? long : (long * a) / b);
      height.value = fit(height, a >= b ? (long * b) / a : long);
    });
  });
}

// Ctrl+Enter (Cmd+Enter) anywhere in the playground runs it.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  const form = event.target instanceof Element && event.target.closest("form[data-playground]");
  if (!form) return;
  event.preventDefault();
  form.requestSubmit(form.querySelector(".run-bar button[type=submit]"));
});

// The error summary of a form that came back gets the focus (it is at the top).
function focusErrorSummary(root) {
  const summary = root.querySelector("[data-error-summary]");
  if (summary) summary.focus();
}

// Choosing other models swaps the playground's fields (htmx): what was given
// for images (a file, a kept image, a painted mask) moves to the new fields,
// and so does what was typed while the new fields were on their way (the
// server filled them with the values sent, before that typing).
let carried = null;
let sentValues = null;
let openSections = [];
const TYPED = "input:not([type=file]):not([type=checkbox]):not([type=radio]):not([type=hidden]), textarea, select";
document.addEventListener("htmx:beforeRequest", (event) => {
  const fields = document.getElementById("fields");
  if (!fields || event.detail.target !== fields) return;
  sentValues = new Map([...fields.querySelectorAll(TYPED)].map((input) => [input, input.value]));
});
document.addEventListener("htmx:beforeSwap", (event) => {
  const old = event.detail.target;
  if (!old || old.id !== "fields") return;
  carried = {};
  old.querySelectorAll("input[type=file], input[name$=_kept], input[name=mask_painted]").forEach((input) => {
    carried[input.name] = input.type === "file" ? input.files : input.value;
  });
  (sentValues || new Map()).forEach((value, input) => {
    if (input.name && input.value !== value) carried[input.name] = input.value;
  });
  sentValues = null;
  openSections = [...old.querySelectorAll("details[open][class]")].map((details) => details.className);
});
document.addEventListener("htmx:afterSwap", (event) => {
  if (!carried) return;
  const fields = document.getElementById("fields");
  if (fields) {
    openSections.forEach((name) => fields.querySelectorAll(`details[class="${CSS.escape(name)}"]`).forEach((d) => { d.open = true; }));
  }
  openSections = [];
  Object.entries(carried).forEach(([name, value]) => {
    const input = fields && fields.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) return;
    if (input.type === "file") {
      if (value && value.length) input.files = value;
    } else if (value) {
      input.value = value;
    }
  });
  carried = null;
}, true);

// Restoring settings from a PNG: a chosen PNG is sent at once; one dropped on
// the panel, or on the playground's form anywhere but an image input, too.
// The server fills the form (htmx swaps #playground; a refused file swaps
// only the panel, #restore); its summary gets the focus.
function setUpRestore(root) {
  const panel = root.querySelector("[data-restore]");
  if (!panel || panel.dataset.ready) return;
  panel.dataset.ready = "1";
  panel.querySelectorAll("[data-js-only]").forEach((element) => { element.hidden = false; });
  const form = panel.querySelector("form");
  const input = form.querySelector("input[name=png]");
  // htmx may not have processed a just-swapped form yet: without that, the
  // submit would be a plain post that reloads the page and empties the form.
  input.addEventListener("change", () => {
    if (!input.files[0]) return;
    if (window.htmx) htmx.process(form);
    form.requestSubmit();
  });
  const restored = panel.querySelector("[data-restored]");
  if (restored) restored.focus();
}

function restoreDropTarget(event) {
  const target = event.target instanceof Element ? event.target : null;
  if (!target || target.closest("[data-image-drop]")) return null;
  if (!target.closest("[data-restore], #playground-form")) return null;
  return document.querySelector("[data-restore]");
}

document.addEventListener("dragover", (event) => {
  const panel = restoreDropTarget(event);
  if (!panel) return;
  event.preventDefault();
  panel.classList.add("dropping");
});
document.addEventListener("dragleave", () => {
  const panel = document.querySelector("[data-restore].dropping");
  if (panel) panel.classList.remove("dropping");
});
document.addEventListener("drop", (event) => {
  const panel = restoreDropTarget(event);
  if (!panel) return;
  event.preventDefault();
  panel.classList.remove("dropping");
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (!file) return;
  panel.open = true;
  const input = panel.querySelector("input[name=png]");
  const transfer = new DataTransfer();
  transfer.items.add(file);
  input.files = transfer.files;
  input.form.requestSubmit();
});

// Grids: the cell size slider resizes every cell at once (a CSS variable on
// the table); without JavaScript the size presets and "Apply" do it.
function setUpGridSize(root) {
  root.querySelectorAll("[data-grid-size]").forEach((slider) => {
    const table = document.getElementById(slider.dataset.gridSize);
    if (!table || slider.dataset.ready) return;
    slider.dataset.ready = "1";
    slider.addEventListener("input", () => table.style.setProperty("--cell", `${slider.value}px`));
  });
}

function setUp(root) {
  setUpRestore(root);
  setUpCopyButtons(root);
  setUpGridSize(root);
  setUpImageInputs(root);
  setUpMaskPainter(root);
  setUpPresets(root);
  setUpZoom(root);
}

document.addEventListener("DOMContentLoaded", () => {
  setUp(document);
  // The moderation queue starts on its first item (or the one a refused decision names).
  const invalid = document.querySelector("[data-review] [aria-invalid=true]");
  const first = document.querySelector("[data-review]");
  if (invalid) invalid.focus(); else if (first) first.focus({ preventScroll: true });
  focusErrorSummary(document);
});
// The playground's fields are swapped in by htmx when the chosen models change.
document.addEventListener("htmx:afterSwap", (event) => setUp(event.detail.elt.parentNode || document));

// The arena: 1/2/3/4 vote left, right, tie, both bad; N (or Enter) goes to the
// next pair once the versions are shown. Not while typing in a field.
document.addEventListener("keydown", (event) => {
  const stage = document.querySelector("[data-arena]");
  if (!stage || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof Element && event.target.closest("input, textarea, select, [contenteditable]")) return;
  const form = stage.querySelector("form[data-arena-form]");
  if (form && ["1", "2", "3", "4"].includes(event.key)) {
    const button = form.querySelector(`button[data-choice="${event.key}"]`);
    if (!button || form.dataset.sent) return;
    event.preventDefault();
    form.dataset.sent = "1";  // one vote per key press, however fast they come
    button.click();  // a click, so htmx sends the button's choice with the form
    return;
  }
  const next = document.querySelector("[data-arena-next]");
  if (next && (event.key === "n" || event.key === "N" || (event.key === "Enter" && event.target === document.body))) {
    event.preventDefault();
    next.click();
  }
});
// After an htmx swap the new pair's buttons or the reveal's Next button take the focus.
document.addEventListener("htmx:afterSwap", (event) => {
  if (!event.detail.target || event.detail.target.id !== "arena-stage") return;
  const focus = event.detail.target.querySelector("[data-arena-next], [data-arena-form] button");
  if (focus) focus.focus({ preventScroll: true });
});
