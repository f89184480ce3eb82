// senet serve's page: upload or snap a photo, show the faces, emotions and heatmaps.
// Plain DOM, no build step; every text from the server goes in through textContent.
"use strict";

const METHOD_NAMES = {
  gradcam: "Grad-CAM",
  gradxact: "gradient × activation",
  "gradcam++": "Grad-CAM++",
  intgrad: "integrated gradients",
  attention: "SE attention",
};
const SVG = "http://www.w3.org/2000/svg";
let card = null;
let stream = null;
let photoUrl = null;

const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function fact(list, name, value) {
  if (value === undefined || value === null || value === "") return;
  list.append(element("dt", name), element("dd", value));
}

async function loadCard() {
  try {
    const response = await fetch("/model");
    card = await response.json();
    if (!response.ok) throw new Error(card.error || response.statusText);
  } catch (error) {
    $("card-loading").textContent = "The model card could not be read: " + error.message;
    return;
  }
  $("card-loading").remove();
  const warnings = $("card-warnings");
  for (const text of card.warnings || []) warnings.append(element("p", text, "warning"));
  const facts = $("card-facts");
  const input = card.input || {};
  const trained = card.trained_on || {};
  fact(facts, "Model", `${card.name} (${card.task})`);
  fact(facts, "Classes", (card.classes || []).join(", "));
  fact(facts, "Input", input.range ? `${input.size}×${input.size} ${input.colour}, values ${input.range.join(" to ")}` : `${input.size}×${input.size}, ${input.channels} channel${input.channels === 1 ? "" : "s"}`);
  fact(facts, "Trained on", trained.dataset ? trained.dataset + (trained.data && trained.data !== trained.dataset ? ` (${trained.data})` : "") : "not recorded");
  fact(facts, "Runs on", card.runtime === "tflite" ? "LiteRT (the model's checked .tflite export)" : card.runtime);
  if (card.parameters) fact(facts, "Parameters", card.parameters.toLocaleString("en"));
  const explain = card.explain || {};
  fact(facts, "Heatmaps", explain.available ? `${METHOD_NAMES[explain.method] || explain.method} at layer ${explain.layer}` : explain.why_not);
  fact(facts, "Faces found by", card.faces);
  if (card.min_score !== undefined) fact(facts, "Boxes shown", `scoring ${card.min_score} or more`);
  for (const text of card.notes || []) fact(facts, "Note", text);
  const method = $("method");
  if (explain.available) {
    method.value = explain.method;
  } else if (card.task === "classification") {
    method.disabled = true;
  } else {
    method.hidden = true;
    $("method-label").hidden = true;
  }
  if (card.task === "detection") {
    $("min-score-field").hidden = false;
    $("min-score").value = card.min_score;
  }
}

function clearResult() {
  $("faces").replaceChildren();
  $("boxes").replaceChildren();
  $("photo-caption").textContent = "";
}

async function send(blob, name) {
  if (!blob) return;
  clearResult();
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(blob);
  const photo = $("photo");
  photo.src = photoUrl;
  $("result").hidden = false;
  setStatus(`Looking at ${name}…`);
  const form = new FormData();
  form.append("file", blob, name);
  const explain = card && card.explain && card.explain.available;
  let url = explain ? `/explain?method=${encodeURIComponent($("method").value)}` : "/predict";
  if (card && card.task === "detection") url = `/predict?min_score=${encodeURIComponent($("min-score").value)}`;
  let answer;
  try {
    const response = await fetch(url, { method: "POST", body: form });
    answer = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (error) {
    setStatus(`${name}: ${error.message}`, true);
    return;
  }
  if (!photo.complete) await new Promise((done) => photo.addEventListener("load", done, { once: true }));
  render(answer, name);
}

function render(answer, name) {
  const task = card ? card.task : "classification";
  if (task === "detection") return renderDetections(answer, name);
  if (task === "segmentation") return renderSegmentation(answer, name);
  return renderFaces(answer, name);
}

function drawBox(box, text, fontSize) {
  // box: x, y, width, height in the photo's pixels
  const [x, y, w, h] = box;
  const rect = document.createElementNS(SVG, "rect");
  rect.setAttribute("x", x); rect.setAttribute("y", y);
  rect.setAttribute("width", w); rect.setAttribute("height", h);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", x + 4);
  label.setAttribute("y", Math.max(fontSize, y - 6));
  label.setAttribute("font-size", fontSize);
  label.textContent = text;
  $("boxes").append(rect, label);
}

function fitBoxes() {
  const photo = $("photo");
  const boxes = $("boxes");
  boxes.setAttribute("viewBox", `0 0 ${photo.naturalWidth} ${photo.naturalHeight}`);
  boxes.setAttribute("preserveAspectRatio", "none");
  return Math.max(14, Math.round(photo.naturalWidth / 30));
}

function renderDetections(answer, name) {
  const fontSize = fitBoxes();
  const found = answer.detections || [];
  found.forEach((item, index) => {
    const [x0, y0, x1, y1] = item.box;
    drawBox([x0, y0, x1 - x0, y1 - y0], `${index + 1} ${item.class} ${item.score.toFixed(2)}`, fontSize);
    const row = element("li", null, "face");
    const title = element("h3");
    title.append(`Object ${index + 1}: `, element("span", item["class"], "label"), ` score ${item.score.toFixed(2)}`);
    row.append(title, element("p", `box ${item.box.map((v) => Math.round(v)).join(", ")} (x0, y0, x1, y1)`));
    $("faces").append(row);
  });
  const photo = $("photo");
  $("photo-caption").textContent = `${name}: ${photo.naturalWidth}×${photo.naturalHeight} pixels, ${found.length} object${found.length === 1 ? "" : "s"} scoring ${answer.min_score} or more.`;
  if (found.length === 0) {
    const best = answer.best_score === null || answer.best_score === undefined ? "" : ` (best ${answer.best_score.toFixed(2)})`;
    setStatus(`Nothing in ${name} scored ${answer.min_score} or more${best}.`);
  } else {
    setStatus(`Done: ${found.length} object${found.length === 1 ? "" : "s"} in ${name}.`);
  }
}

function renderSegmentation(answer, name) {
  const photo = $("photo");
  photo.src = `data:image/png;base64,${answer.overlay}`;
  photo.alt = `${name} with each class tinted over it`;
  const row = element("li", null, "face");
  row.append(element("h3", "Classes"));
  const probs = element("ul", null, "probs");
  probs.setAttribute("aria-label", "Share of the image per class");
  const sorted = Object.entries(answer.classes).sort((a, b) => b[1].fraction - a[1].fraction);
  for (const [className, share] of sorted) {
    const item = element("li");
    const bar = element("span", null, "bar");
    const fill = element("span", null, "fill");
    fill.style.width = `${(100 * share.fraction).toFixed(1)}%`;
    bar.append(fill);
    bar.setAttribute("aria-hidden", "true");
    item.append(element("span", className, "name"), bar, element("span", `${(100 * share.fraction).toFixed(1)}%`, "value"));
    probs.append(item);
  }
  row.append(probs);
  $("faces").append(row);
  $("photo-caption").textContent = `${name}: ${answer.shape[1]}×${answer.shape[0]} pixels, each class tinted.`;
  setStatus(`Done: ${name} labelled.`);
}

function renderFaces(answer, name) {
  const photo = $("photo");
  const fontSize = fitBoxes();
  const faces = answer.faces || [];
  faces.forEach((face, index) => {
    drawBox(face.box, `${index + 1} ${face.label}`, fontSize);
    $("faces").append(faceCard(face, index, answer));
  });
  const method = answer.method ? ` Heatmaps: ${METHOD_NAMES[answer.method] || answer.method} at layer ${answer.layer || "(the method's default)"}.` : "";
  $("photo-caption").textContent = `${name}: ${photo.naturalWidth}×${photo.naturalHeight} pixels, ${faces.length} face${faces.length === 1 ? "" : "s"}.${method}`;
  if (faces.length === 0) {
    setStatus(`No face found in ${name} (OpenCV's frontal-face detector): try a photo with a larger, upright face.`);
  } else {
    setStatus(`Done: ${faces.length} face${faces.length === 1 ? "" : "s"} in ${name}.`);
  }
}

function faceCard(face, index, answer) {
  const item = element("li", null, "face");
  const title = element("h3");
  title.append(`Face ${index + 1}: `, element("span", face.label, "label"), ` ${(100 * face.probabilities[face.label]).toFixed(0)}%`);
  item.append(title);
  if (face.heatmap) {
    const figure = element("figure", null, "heatmap");
    const image = element("img");
    const method = METHOD_NAMES[answer.method] || answer.method;
    image.src = `data:image/png;base64,${face.heatmap}`;
    image.alt = `Heatmap of where the model looked in face ${index + 1} (${method}, layer ${answer.layer || "default"}), explaining ${face.target}`;
    figure.append(image, element("figcaption", `${method} for “${face.target}”; red: where the model looked most.`));
    item.append(figure);
  }
  const probs = element("ul", null, "probs");
  probs.setAttribute("aria-label", `Probabilities for face ${index + 1}`);
  const sorted = Object.entries(face.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, value] of sorted) {
    const row = element("li", null, name === face.label ? "top" : "");
    const bar = element("span", null, "bar");
    const fill = element("span", null, "fill");
    fill.style.width = `${(100 * value).toFixed(1)}%`;
    bar.append(fill);
    bar.setAttribute("aria-hidden", "true");
    row.append(element("span", name, "name"), bar, element("span", `${(100 * value).toFixed(1)}%`, "value"));
    probs.append(row);
  }
  item.append(probs);
  return item;
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("This browser gives no webcam here (it needs http://127.0.0.1 or https).", true);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setStatus(`The webcam could not be opened: ${error.message}`, true);
    return;
  }
  $("camera-video").srcObject = stream;
  $("camera").hidden = false;
  $("camera-snap").focus();
}

function stopCamera() {
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  $("camera").hidden = true;
  $("camera-start").focus();
}

function snap() {
  const video = $("camera-video");
  if (!video.videoWidth) return;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => send(blob, "webcam.jpg"), "image/jpeg", 0.92);
}

function init() {
  loadCard();
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) send(file, file.name);
  });
  const again = () => {
    const file = $("file").files[0];
    if (file) send(file, file.name);
  };
  $("method").addEventListener("change", again);
  $("min-score").addEventListener("change", again);
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("camera-snap").addEventListener("click", snap);
  $("drop-zone").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
  document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    document.body.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) send(file, file.name);
  });
}

document.addEventListener("DOMContentLoaded", init);
