// Example portal on another origin than the cod-retrieve site. Query parameters:
//   site   the cod-retrieve site (default: the folder above this file)
//   api    Storage API origin (default https://storage.googleapis.com)
//   bucket, prefix, StudyInstanceUIDs (repeated or comma separated)
const params = new URLSearchParams(location.search);
const SITE = new URL(params.get("site") || "../", import.meta.url);
const config = {
  api: params.get("api") || "https://storage.googleapis.com",
  bucket: params.get("bucket") || "",
  prefix: params.get("prefix") || "",
  studies: params.getAll("StudyInstanceUIDs").flatMap((v) => v.split(/[\s,]+/)).filter(Boolean),
};
const $ = (id) => document.getElementById(id);

// The module and the element, loaded cross-origin by absolute URL (the site sends
// Access-Control-Allow-Origin; Pyodide's files are found relative to the module).
const mod = await import(new URL("cod-retrieve.mjs", SITE).href);
await import(new URL("cod-retrieve-element.mjs", SITE).href);
window.codModule = mod;

// The portal's auth service: here, the token field.
const getToken = async () => $("token").value || null;

const el = $("download");
el.api = config.api;
el.bucket = config.bucket;
el.prefix = config.prefix;
el.getToken = getToken;
for (const type of ["progress", "series-saved", "complete", "error"]) {
  el.addEventListener(type, (e) => {
    (window.portalEvents ??= []).push({ type, detail: e.detail, keys: Object.keys(e.detail ?? {}) });
  });
}

function fmtBytes(n) {
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function selected() {
  return [...document.querySelectorAll("#studies tbody input:checked")].map((i) => i.value);
}

const body = $("studies").tBodies[0];
for (const uid of config.studies) {
  const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: true, value: uid });
  box.setAttribute("aria-label", `Select study ${uid}`);
  const tr = document.createElement("tr");
  tr.dataset.study = uid;
  const cells = [box, uid, "…", "…"].map((c) => {
    const td = document.createElement("td");
    td.append(c);
    return td;
  });
  tr.append(...cells);
  body.append(tr);
}
$("all").addEventListener("change", () => {
  for (const box of body.querySelectorAll("input")) box.checked = $("all").checked;
});

const problem = mod.folderPickerProblem();
if (problem && problem.kind !== "no-user-gesture") {
  $("to-folder").disabled = true;
  $("note").hidden = false;
  $("note").textContent = `${problem.message} "Download zip" works everywhere.`;
}

function download(zip) {
  el.studyUIDs = selected();
  // Called straight from the click: the folder picker still has its user gesture.
  el.start({ zip }).catch((e) => {
    $("note").hidden = false;
    $("note").textContent = e.kind === "no-user-gesture" || e.kind === "cross-origin-iframe"
      ? `${e.message}` : `Download failed: ${e.message}`;
  });
}
$("to-folder").addEventListener("click", () => download(false));
$("as-zip").addEventListener("click", () => download(true));

// The hosted viewer route in a new window; the token follows by postMessage once
// the page says it is ready (and again whenever it asks for a fresh one).
$("open-page").addEventListener("click", () => {
  const path = ["download", config.bucket, ...config.prefix.split("/").filter(Boolean)].map(encodeURIComponent).join("/");
  const url = new URL(path, SITE);
  url.searchParams.set("api", config.api);
  for (const uid of selected()) url.searchParams.append("StudyInstanceUIDs", uid);
  const win = window.open(url.href, "cod-download");
  window.viewerWindow = win;
  window.addEventListener("message", async (ev) => {
    if (ev.source !== win || ev.origin !== SITE.origin) return;
    if (ev.data?.type === "cod-retrieve-ready" || ev.data?.type === "cod-retrieve-token-request") {
      win.postMessage({ type: "cod-retrieve-token", token: await getToken() }, SITE.origin);
    }
  });
});

// List what each study holds (listing and metadata only, no tar bytes).
const cod = await mod.createCodDownload({ apiBase: config.api, getToken });
cod.initBucket({ bucket: config.bucket, bucketPrefix: config.prefix || null, token: null });
for (const uid of config.studies) {
  const tr = body.querySelector(`tr[data-study="${CSS.escape(uid)}"]`);
  try {
    const stats = await cod.getStats([uid]);
    tr.cells[2].textContent = String(stats.totalSeriesCount);
    tr.cells[3].textContent = fmtBytes(stats.totalSizeBytes);
  } catch (e) {
    tr.cells[2].textContent = "—";
    tr.cells[3].textContent = e.message ?? String(e);
  }
}
$("status").textContent = "Ready.";
document.body.dataset.ready = "1";
