// The generation page: plain JS, no build step, talks only to this server's /api.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: {}, limits: {}, last: null, busy: false };

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function setStatus(text, ok = false) {
  $("status").textContent = text;
  $("status").className = ok ? "ok" : "";
}

async function init() {
  const res = await fetch("/api/models");
  const info = await res.json();
  state.limits = info.limits;
  for (const m of info.models) state.models[m.name] = m;
  const names = Object.keys(state.models);
  const first = state.models.mnist_cond ? "mnist_cond" : names[0];
  for (const name of names) $("model").append(option(name, name));
  $("model").value = first;
  for (const method of info.methods) $("method").append(option(method, method));
  $("method").value = "dpm_solver";
  for (const mask of info.mask_presets) $("mask").append(option(mask, mask + " half"));
  $("mask").querySelector("option[value=center]").textContent = "centre square";
  for (const m of info.models.filter((m) => m.tasks.includes("colorize"))) {
    $("colour-model").append(option(m.name, m.name));
  }
  $("steps").max = state.limits.max_steps;
  onModelChange();
  setStatus(`${names.length} models ready`, true);
}

function onModelChange() {
  const m = state.models[$("model").value];
  const label = $("label");
  label.replaceChildren(option("", m.conditional ? "any (unconditional)" : "— (unconditional model)"));
  if (m.conditional) m.class_names.forEach((name, i) => label.append(option(String(i), name)));
  if (m.conditional && m.class_names.length > 3) label.value = "3";
  label.disabled = !m.conditional;
  const points = m.kind === "points";
  $("n").max = points ? state.limits.max_points : state.limits.max_images;
  $("n").value = points ? 500 : Math.min(Number($("n").value) || 4, state.limits.max_images);
  $("model-info").textContent =
    `${m.kind === "image" ? m.data_shape.join("×") + " images" : m.data_shape[0] + "-D points"}` +
    `, ${m.network}, ${m.sde.split("(")[0]}${m.conditional ? ", " + m.num_classes + " classes" : ""}`;
  onLabelChange();
}

function onLabelChange() {
  $("guidance").disabled = $("label").value === "";
}

function conditioning(model) {
  const m = state.models[model];
  if (!m.conditional || $("label").value === "") return { labels: null, guidance: null };
  const g = $("guidance").value;
  return { labels: Number($("label").value), guidance: g === "" ? null : Number(g) };
}

function sampling() {
  const seed = $("seed").value;
  return { method: $("method").value, steps: Number($("steps").value),
           seed: seed === "" ? null : Number(seed) };
}

async function errorText(res) {
  let body = {};
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  const retry = res.headers.get("Retry-After");
  return `${res.status} ${body.error || res.statusText}` +
    (body.field ? ` (${body.field})` : "") + `: ${body.message || ""}` +
    (retry ? ` — retry in ${retry} s` : "");
}

// POST a JSON body to a server-sent-events endpoint; call onEvent(kind, data) per event.
async function postStream(url, body, onEvent) {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                 body: JSON.stringify(body) });
  if (!res.ok) throw new Error(await errorText(res));
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(kind, JSON.parse(data));
    }
  }
}

async function postJSON(url, body) {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                 body: JSON.stringify(body) });
  if (!res.ok) throw new Error(await errorText(res));
  return res.json();
}

function pictures(target, urls, plot, names) {
  target.replaceChildren();
  const all = plot ? [plot] : urls;
  all.forEach((url, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url;
    img.alt = names ? names[i] : "preview";
    if (plot) img.className = "plot";
    fig.append(img);
    if (names) {
      const a = document.createElement("a");
      a.href = url;
      a.download = names[i];
      a.textContent = "PNG";
      fig.append(document.createElement("br"), a);
    }
    target.append(fig);
  });
}

function showPreview(p) {
  pictures($("preview"), p.images, p.plot, null);
  $("progress").value = p.step / p.steps;
  $("step").textContent = `step ${p.step}/${p.steps}, t = ${p.t.toFixed(3)}`;
}

function showResult(r) {
  const base = `${r.model}_${r.task}_seed${r.seed}`;
  const names = r.plot ? [`${base}_plot.png`] : r.images.map((_, i) => `${base}_${i}.png`);
  pictures($("results"), r.images, r.plot, names);
  $("progress").value = 1;
  $("summary").textContent = `${r.task}: ${r.model}, ${r.method}, ${r.steps} steps, ${r.nfe} network calls, ` +
    `${r.seconds.toFixed(2)} s, seed ${r.seed}`;
  state.last = r.kind === "image" ? { model: r.model, images: r.images } : null;
  setStatus("done", true);
}

async function run(path, body) {
  if (state.busy) return;
  state.busy = true;
  for (const id of ["generate", "inpaint", "colorize"]) $(id).disabled = true;
  setStatus("working…", true);
  $("preview").replaceChildren();
  $("progress").value = 0;
  $("step").textContent = "";
  try {
    if ($("live").checked) {
      let result = null;
      await postStream(`/api/${path}/stream`, body, (kind, data) => {
        if (kind === "preview") showPreview(data);
        else if (kind === "result") result = data;
        else if (kind === "error") throw new Error(data.message);
      });
      if (!result) throw new Error("the stream ended without a result");
      showResult(result);
    } else {
      showResult(await postJSON(`/api/${path}`, body));
    }
  } catch (err) {
    setStatus(err.message);
  } finally {
    state.busy = false;
    $("generate").disabled = false;
    $("inpaint").disabled = $("colorize").disabled = !state.last;
    if ($("colour-model").options.length === 0) $("colorize").disabled = true;
  }
}

$("controls").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const model = $("model").value;
  run("generate", { model, n: Number($("n").value), ...sampling(), ...conditioning(model) });
});
$("inpaint").addEventListener("click", () => {
  const { model, images } = state.last;
  run("inpaint", { model, images, mask: $("mask").value, ...sampling(), ...conditioning(model) });
});
$("colorize").addEventListener("click", () => {
  run("colorize", { model: $("colour-model").value, images: state.last.images, ...sampling() });
});
$("model").addEventListener("change", onModelChange);
$("label").addEventListener("change", onLabelChange);
init().catch((err) => setStatus(`could not load the model list: ${err.message}`));
