// The compare viewer (/compare, templates/compare.html). Without this file the
// page shows A, B and their difference one under the other.
//
// Modes: side by side, slider (A left of the line, B right), flip (A or B in
// the same place) and the difference heatmap. Every pane shows the same part
// of its image: one zoom and one pan, kept as fractions of a pane's size, so
// images of different sizes stay in step. B is drawn in A's frame in the
// slider and flip (scaled to A's size, as the heatmap compares them).
//
// Keys: 1-4 modes, F flip, + - 0 zoom, arrows pan (focus on the images),
// [ ] move the slider's line. Touch: drag pans, pinch zooms, a tap moves the line.
"use strict";

(function () {
  const MIN_ZOOM = 1;
  const MAX_ZOOM = 16;
  const STEP = 1.25;
  const PAN_STEP = 0.05;

  function setUp(root) {
    const stage = root.querySelector("[data-compare-stage]");
    if (!stage || root.dataset.ready) return;
    root.dataset.ready = "1";
    const toolbar = root.querySelector("[data-compare-toolbar]");
    const panes = Object.fromEntries([...stage.querySelectorAll("[data-pane]")].map((p) => [p.dataset.pane, p]));
    const layers = [...stage.querySelectorAll("[data-layer]")];
    const overlay = stage.querySelector("[data-overlay]");
    const overlayCaption = stage.querySelector("[data-overlay-caption]");
    const wipeControl = root.querySelector("[data-wipe-control]");
    const wipe = root.querySelector("#compare-wipe");
    const flipControl = root.querySelector("[data-flip-control]");
    const flipStatus = root.querySelector("[data-flip-status]");
    const diffStats = root.querySelector("[data-diff-stats]");
    const level = root.querySelector("[data-zoom-level]");
    const radios = [...root.querySelectorAll("input[name=compare-mode]")];
    const view = { zoom: 1, x: 0, y: 0 };  // x, y: the top left corner's offset, in pane widths and heights
    let mode = "side";
    let showingB = false;

    toolbar.hidden = false;
    stage.classList.add("compare-stage-live");

    function clamp() {
      view.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.zoom));
      view.x = Math.min(0, Math.max(1 - view.zoom, view.x));
      view.y = Math.min(0, Math.max(1 - view.zoom, view.y));
    }

    function draw() {
      clamp();
      const transform = `translate(${view.x * 100}%, ${view.y * 100}%) scale(${view.zoom})`;
      layers.forEach((layer) => { layer.style.transform = transform; });
      level.textContent = `${Math.round(view.zoom * 10) / 10}×`;
      stage.dataset.zoomed = view.zoom > 1 ? "true" : "false";
      placeLine();
    }

    // The slider's line on the screen: the wipe is a point of the image (it
    // zooms and pans with it); the line is drawn over the frame, unscaled.
    function placeLine() {
      const screen = (view.x + (view.zoom * Number(wipe.value)) / 100) * 100;
      overlay.style.setProperty("--wipe-screen", `${Math.min(100, Math.max(0, screen))}%`);
    }

    // Zoom by `factor` keeping the point at (fx, fy) (fractions of a pane) where it is.
    function zoomAt(factor, fx = 0.5, fy = 0.5) {
      const before = view.zoom;
      const after = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, before * factor));
      view.x = fx - ((fx - view.x) / before) * after;
      view.y = fy - ((fy - view.y) / before) * after;
      view.zoom = after;
      draw();
    }

    function reset() {
      view.zoom = 1; view.x = 0; view.y = 0;
      draw();
    }

    function setWipe(percent) {
      const value = Math.min(100, Math.max(0, Math.round(percent)));
      wipe.value = String(value);
      overlay.style.setProperty("--wipe", `${value}%`);
      placeLine();
    }

    function showFlip() {
      overlay.dataset.showing = showingB ? "b" : "a";
      flipStatus.textContent = showingB ? "Showing B" : "Showing A";
      overlayCaption.textContent = showingB ? "B (press F for A)" : "A (press F for B)";
    }

    function setMode(next) {
      mode = next;
      stage.dataset.mode = mode;
      radios.forEach((radio) => { radio.checked = radio.value === mode; });
      panes.a.hidden = panes.b.hidden = mode !== "side";
      panes.overlay.hidden = mode !== "slider" && mode !== "flip";
      panes.diff.hidden = mode !== "diff";
      overlay.dataset.mode = mode;
      wipeControl.hidden = mode !== "slider";
      flipControl.hidden = mode !== "flip";
      diffStats.hidden = mode !== "diff";
      if (mode === "slider") overlayCaption.textContent = "A left of the line, B right of it";
      if (mode === "flip") showFlip();
      draw();
    }

    function flip() {
      if (mode !== "flip") { showingB = false; setMode("flip"); }
      showingB = !showingB;
      showFlip();
    }

    radios.forEach((radio) => radio.addEventListener("change", () => { if (radio.checked) setMode(radio.value); }));
    root.querySelector("[data-flip]").addEventListener("click", flip);
    root.querySelectorAll("[data-zoom]").forEach((button) => {
      button.addEventListener("click", () => {
        const how = button.dataset.zoom;
        if (how === "reset") reset(); else zoomAt(how === "in" ? STEP : 1 / STEP);
      });
    });
    wipe.addEventListener("input", () => setWipe(Number(wipe.value)));

    // The frame a pointer is over, and where in it (fractions).
    function inFrame(event) {
      const frame = event.target.closest("[data-frame]");
      if (!frame) return null;
      const box = frame.getBoundingClientRect();
      return { frame, box, fx: (event.clientX - box.left) / box.width, fy: (event.clientY - box.top) / box.height };
    }

    stage.addEventListener("wheel", (event) => {
      const at = inFrame(event);
      if (!at) return;
      event.preventDefault();
      zoomAt(event.deltaY < 0 ? STEP : 1 / STEP, at.fx, at.fy);
    }, { passive: false });

    // Pointers: one drags (pans), two pinch (zoom about their middle); a tap
    // in the slider moves its line there.
    const pointers = new Map();
    let pinch = null;
    let moved = false;
    stage.addEventListener("pointerdown", (event) => {
      const at = inFrame(event);
      if (!at) return;
      try { stage.setPointerCapture(event.pointerId); } catch (_) { /* a pointer that is gone already */ }
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY, box: at.box });
      moved = false;
      if (pointers.size === 2) {
        const [p, q] = [...pointers.values()];
        pinch = { distance: Math.hypot(p.x - q.x, p.y - q.y) || 1 };
      }
    });
    stage.addEventListener("pointermove", (event) => {
      const last = pointers.get(event.pointerId);
      if (!last) return;
      const dx = event.clientX - last.x;
      const dy = event.clientY - last.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
      last.x = event.clientX; last.y = event.clientY;
      if (pointers.size === 2 && pinch) {
        const [p, q] = [...pointers.values()];
        const distance = Math.hypot(p.x - q.x, p.y - q.y) || 1;
        const box = p.box;
        zoomAt(distance / pinch.distance, ((p.x + q.x) / 2 - box.left) / box.width, ((p.y + q.y) / 2 - box.top) / box.height);
        pinch.distance = distance;
      } else if (pointers.size === 1) {
        view.x += dx / last.box.width;
        view.y += dy / last.box.height;
        draw();
      }
    });
    function release(event) {
      const last = pointers.get(event.pointerId);
      pointers.delete(event.pointerId);
      if (pointers.size < 2) pinch = null;
      if (last && !moved && mode === "slider" && event.type === "pointerup") {
        // The tapped point of the image, whatever the zoom.
        const fx = (event.clientX - last.box.left) / last.box.width;
        setWipe(((fx - view.x) / view.zoom) * 100);
      }
    }
    stage.addEventListener("pointerup", release);
    stage.addEventListener("pointercancel", release);

    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target instanceof Element ? event.target : document.body;
      if (target.closest("input[type=text], input[type=search], textarea, select, [contenteditable]")) return;
      const key = event.key;
      const modes = { 1: "side", 2: "slider", 3: "flip", 4: "diff" };
      if (modes[key]) { setMode(modes[key]); event.preventDefault(); return; }
      if (key === "f" || key === "F") { flip(); event.preventDefault(); return; }
      if (key === "+" || key === "=") { zoomAt(STEP); event.preventDefault(); return; }
      if (key === "-" || key === "_") { zoomAt(1 / STEP); event.preventDefault(); return; }
      if (key === "0") { reset(); event.preventDefault(); return; }
      if ((key === "[" || key === "]") && mode === "slider") {
        setWipe(Number(wipe.value) + (key === "[" ? -5 : 5));
        event.preventDefault();
        return;
      }
      // Arrows pan only with the focus on the images (elsewhere they scroll, or move a radio or the slider).
      const arrows = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
      if (arrows[key] && target === stage) {
        view.x += arrows[key][0] * PAN_STEP * view.zoom;
        view.y += arrows[key][1] * PAN_STEP * view.zoom;
        draw();
        event.preventDefault();
      }
    });

    setWipe(50);
    setMode("side");
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-compare]").forEach(setUp);
  });
})();
