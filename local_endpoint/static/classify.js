// The classify page: send one image's bytes to POST /predict, like any client, and show the top labels.
"use strict";

const page = {
  model: document.getElementById("model"),
  zone: document.getElementById("drop-zone"),
  file: document.getElementById("file"),
  topK: document.getElementById("top-k"),
  preview: document.getElementById("preview"),
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  predictions: document.getElementById("predictions"),
};

// The API's errors are {"error": {"code", "message"}}; API Gateway's own 502 is {"message"}.
function errorMessage(body) {
  return body?.error?.message ?? body?.message ?? "the server gave no details";
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function showModel() {
  try {
    const response = await fetch("/health");
    const body = await readJson(response);
    if (response.ok) {
      const model = body.model;
      page.model.textContent =
        `Model: ${model.name} version ${model.version} (${model.architecture}, ${model.num_classes} classes)`;
    } else {
      page.model.textContent = `Model unavailable: ${errorMessage(body)}`;
    }
  } catch (error) {
    page.model.textContent = `Model: the server cannot be reached (${error.message}).`;
  }
}

function showPreview(file) {
  if (page.preview.src) {
    URL.revokeObjectURL(page.preview.src);
  }
  page.preview.hidden = !file.type.startsWith("image/");
  page.preview.alt = `Preview of ${file.name || "the pasted image"}`;
  page.preview.src = URL.createObjectURL(file);
}

function showError(text) {
  page.error.textContent = text;
  page.error.hidden = false;
}

function showPredictions(predictions) {
  for (const { label, score } of predictions) {
    const percent = `${(score * 100).toFixed(1)}%`;
    const item = document.createElement("li");
    const text = document.createElement("div");
    text.className = "prediction-text";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = percent;
    text.append(name, value);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true"); // the percentage above says the same in words
    const fill = document.createElement("span");
    fill.style.width = percent;
    bar.append(fill);
    item.append(text, bar);
    page.predictions.append(item);
  }
}

function predictUrl() {
  const topK = page.topK.value.trim();
  // An invalid value is sent as typed: the API's 400 says what is wrong with it.
  return topK ? `/predict?top_k=${encodeURIComponent(topK)}` : "/predict";
}

async function classify(file) {
  showPreview(file);
  page.predictions.replaceChildren();
  page.error.hidden = true;
  const name = file.name || "the pasted image";
  page.status.textContent = `Classifying ${name}…`;
  const started = performance.now();
  let response;
  try {
    response = await fetch(predictUrl(), {
      method: "POST",
      // The file's own media type: the API decides what it accepts (415 otherwise).
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
  } catch (error) {
    page.status.textContent = `Could not classify ${name}.`;
    showError(`The server cannot be reached: ${error.message}`);
    return;
  }
  const body = await readJson(response);
  const latency = Math.round(performance.now() - started);
  if (!response.ok) {
    page.status.textContent = `Could not classify ${name} (answered in ${latency} ms).`;
    showError(`${response.status} ${response.statusText}: ${errorMessage(body)}`);
    return;
  }
  const model = body.model;
  page.status.textContent =
    `${name}: classified by ${model.name} version ${model.version} in ${latency} ms.`;
  showPredictions(body.results[0].predictions);
}

function firstFile(files) {
  return files && files.length > 0 ? files[0] : null;
}

page.file.addEventListener("change", () => {
  const file = firstFile(page.file.files);
  if (file) {
    classify(file);
  }
  page.file.value = ""; // choosing the same file again classifies it again
});

// Drop anywhere on the page: a missed drop zone should not make the browser open the file.
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  page.zone.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) {
    page.zone.classList.remove("dragging");
  }
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  page.zone.classList.remove("dragging");
  const file = firstFile(event.dataTransfer?.files);
  if (file) {
    classify(file);
  }
});
document.addEventListener("paste", (event) => {
  const file = firstFile(event.clipboardData?.files);
  if (file) {
    event.preventDefault();
    classify(file);
  }
});

showModel();
