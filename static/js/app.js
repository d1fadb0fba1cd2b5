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

// Forms with data-confirm ask first.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
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

  imageInput.addEventListener("change", () => {
    const file = imageInput.files[0];
    if (!file) { painter.hidden = true; return; }
    const url = URL.createObjectURL(file);
    picture = new Image();
    picture.onload = () => {
      canvas.width = mask.width = picture.naturalWidth;
      canvas.height = mask.height = picture.naturalHeight;
      strokes.length = 0;
      painted = false;
      clear();
      painter.hidden = false;
    };
    picture.src = url;
  });
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

function setUp(root) {
  setUpCopyButtons(root);
  setUpMaskPainter(root);
  setUpZoom(root);
}

document.addEventListener("DOMContentLoaded", () => {
  setUp(document);
  // The moderation queue starts on its first item (or the one a refused decision names).
  const invalid = document.querySelector("[data-review] [aria-invalid=true]");
  const first = document.querySelector("[data-review]");
  if (invalid) invalid.focus(); else if (first) first.focus({ preventScroll: true });
});
// The playground's fields are swapped in by htmx when the chosen models change.
document.addEventListener("htmx:afterSwap", (event) => setUp(event.detail.elt.parentNode || document));
