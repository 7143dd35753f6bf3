// The hosted page: a thin view over cod-retrieve.mjs (which does the work in Python).
import { createCodDownload, folderPickerProblem, storedDirectoryHandle, supportsFolderPicker, tokenFromMessages }
  from "./cod-retrieve.mjs";
import { fmtBytes, fmtTime } from "./format.mjs";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let cod = null;
let job = null;
let folderChosen = false;
let series = new Map();
// The basket: series left out of the download ("<study>/<series>" keys), kept
// across Check and Download (which checks again). `wantedSeries` comes from the
// address (SeriesInstanceUIDs=...): the rows not listed start unticked.
const leftOut = new Set();
let wantedSeries = null;
let lastStats = null;


// The viewer route download/<bucket>/<prefix...> (download.html): the object form
// {bucket, bucketPrefix: prefix as given}. Null on other paths.
export function viewerRoute(pathname = location.pathname) {
  const at = pathname.indexOf("/download/");
  if (at < 0) return null;
  const parts = pathname.slice(at + "/download/".length).split("/").filter(Boolean).map(decodeURIComponent);
  if (!parts.length) return null;
  return { bucket: parts[0], bucketPrefix: parts.slice(1).join("/") || null };
}

function fillFromQuery() {
  const route = viewerRoute();
  if (route) {
    $("bucket").value = route.bucket;
    $("prefix").value = route.bucketPrefix ?? "";
    $("bucket-details").open = true;
    // download.html took the token out of the address bar before this module loaded.
    if (window.__codRetrieveToken) $("token").value = window.__codRetrieveToken;
    delete window.__codRetrieveToken;
  }
  // Token in the address bar leaks into history and logs: take it, then drop it.
  if (params.has("token")) {
    $("token").value = $("dicomweb-token").value = params.get("token");
    params.delete("token");
    const clean = `${location.pathname}${params.toString() ? "?" + params : ""}${location.hash}`;
    history.replaceState(null, "", clean);
  }
  if (params.get("api")) $("api").value = params.get("api");
  if (params.get("archive")) {
    $("archive-url").value = params.get("archive");
    document.querySelector("input[name='kind'][value='archive']").checked = true;
  }
  if (params.get("dicomweb")) {
    $("dicomweb-url").value = params.get("dicomweb");
    document.querySelector("input[name='kind'][value='dicomweb']").checked = true;
  }
  showSourceFields();
  for (const radio of document.querySelectorAll("input[name='kind']")) radio.addEventListener("change", showSourceFields);
  const layout = params.get("layout");
  if (layout) {
    const known = ["classic", "descriptive", "media"].includes(layout);
    $("layout").value = known ? layout : "template";
    if (!known) $("template").value = layout;
  }
  $("template-label").hidden = $("layout").value !== "template";
  if (/^(1|true|yes)$/i.test(params.get("manifest") ?? "")) $("write-manifest").checked = true;
  if (params.get("bucket")) $("bucket").value = params.get("bucket");
  if (params.get("prefix")) $("prefix").value = params.get("prefix");
  if (params.get("url")) $("bucket-url").value = params.get("url");
  const uids = [...params.getAll("StudyInstanceUIDs"), ...params.getAll("study")]
    .flatMap((v) => v.split(/[\s,]+/)).filter(Boolean);
  if (uids.length) $("studies").value = uids.join("\n");
  const wanted = [...params.getAll("SeriesInstanceUIDs"), ...params.getAll("series")]
    .flatMap((v) => v.split(/[\s,]+/)).filter(Boolean);
  if (wanted.length) wantedSeries = new Set(wanted);
  if ($("bucket").value) $("bucket-details").open = true;
  if (route && params.has("zip")) {
    const zip = /^(1|true|yes)$/i.test(params.get("zip"));
    document.body.dataset.zip = String(zip);
    (zip || !supportsFolderPicker() ? $("download-zip") : $("choose-folder")).classList.add("primary");
  }
}

// Where the page downloads from: a COD bucket or a DICOMweb server.
function sourceKind() { return document.querySelector("input[name='kind']:checked").value; }
function showSourceFields() {
  $("cod-fields").hidden = sourceKind() !== "cod";
  $("dicomweb-fields").hidden = sourceKind() !== "dicomweb";
  $("archive-fields").hidden = sourceKind() !== "archive";
}
function sourceDetails() {
  if (sourceKind() === "dicomweb") {
    const url = $("dicomweb-url").value.trim();
    if (!url) throw new Error("Enter the DICOMweb server's root URL, for example https://host/dicom-web.");
    return { dicomweb: url, token: $("dicomweb-token").value.trim() || null };
  }
  if (sourceKind() === "archive") {
    const url = $("archive-url").value.trim();
    if (!url) throw new Error("Enter the archive's URL (a zip, tar or tar.gz of DICOM files).");
    return { archive: url, token: $("archive-token").value.trim() || null };
  }
  return bucketDetails();
}
function bucketDetails() {
  const url = $("bucket-url").value.trim();
  if (url) return url;
  return { bucket: $("bucket").value.trim(), bucketPrefix: $("prefix").value.trim() || null,
           token: $("token").value.trim() || null };
}
function studyUIDs() {
  return $("studies").value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function showError(text) {
  $("errors-title").hidden = false;
  const li = document.createElement("li");
  li.textContent = text;
  $("errors").append(li);
}
function clearErrors() { $("errors").replaceChildren(); $("errors-title").hidden = true; }

const cell = (tag, cls, text) => {
  const c = document.createElement(tag);
  c.className = cls;
  if (text !== undefined) c.textContent = text;
  return c;
};

// A study's heading row: who and what it is (from its metadata), and a tick
// box for all its series.
function studyRow(study, rows) {
  const tr = document.createElement("tr");
  tr.className = "study";
  tr.dataset.study = study.studyUID;
  const pick = document.createElement("input");
  pick.type = "checkbox";
  const who = [study.patientName, study.patientID && `(${study.patientID})`].filter(Boolean).join(" ");
  const what = [study.studyDate && fmtDate(study.studyDate), study.studyDescription,
                study.accessionNumber && `accession ${study.accessionNumber}`].filter(Boolean).join(" · ");
  pick.setAttribute("aria-label", `Download every series of study ${[who, what].filter(Boolean).join(", ") || study.studyUID}`);
  pick.addEventListener("change", () => pickRows(rows, pick.checked));
  const thPick = cell("th", "pick");
  thPick.scope = "row";
  thPick.append(pick);
  const th = cell("th", "study-context");
  th.colSpan = 6;
  th.scope = "rowgroup";
  th.append(cell("span", "context", [who, what].filter(Boolean).join(" — ") || "Study"),
            cell("span", "uid-line", `${study.studyUID} · ${study.seriesCount} series, ${fmtBytes(study.sizeBytes)}`));
  tr.append(thPick, th);
  return { tr, pick, rows };
}

// Tick (or untick) these series rows: in the basket or left out of it.
function pickRows(rows, on) {
  for (const row of rows) {
    row.pick.checked = on;
    if (on) leftOut.delete(row.key); else leftOut.add(row.key);
  }
  showTotals();
}

function fmtDate(d) {       // DICOM DA (YYYYMMDD) as an ISO date
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d;
}

let studyRows = [];

function renderSeries(stats) {
  const table = $("series-table");
  for (const b of [...table.tBodies]) b.remove();
  series = new Map();
  studyRows = [];
  for (const study of stats.studyDetails) {
    const body = table.createTBody();
    const rows = [];
    const head = studyRow(study, rows);
    body.append(head.tr);
    studyRows.push(head);
    for (const s of stats.seriesDetails) if (s.studyUID === study.studyUID) rows.push(seriesRow(body, s));
  }
  wantedSeries = null;           // taken once; the ticks rule from now on
  $("series-table").hidden = $("filter-label").hidden = stats.seriesDetails.length === 0;
  applyFilter();
}

// Rows whose modality, description or UID holds the filter's words stay in view;
// the others are hidden, not left out (their ticks stay as they are).
function applyFilter() {
  const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  for (const tr of $("series-table").querySelectorAll("tr[data-series]")) {
    const text = tr.textContent.toLowerCase();
    tr.hidden = !words.every((w) => text.includes(w));
  }
}

// A manifest fills the study UIDs and the basket, then checks the bucket.
async function loadManifest(file) {
  clearErrors();
  try {
    const sel = await cod.readManifest(await file.text(), file.name);
    $("studies").value = sel.studies.join("\n");
    leftOut.clear();
    wantedSeries = sel.series ? new Set(sel.series) : null;
    await check();
  } catch (e) {
    showError(e.message ?? String(e));
  }
}

// Series thumbnails, fetched lazily: when a row scrolls into view, in the
// background, once per series (the table is drawn again after each check);
// a thumbnail that cannot be had leaves the row as it is.
const thumbnailBlobs = new Map();      // study/series -> Promise<{url, type} | null>
const thumbnails = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    const td = entry.target;
    thumbnails.unobserve(td);
    const tr = td.closest("tr");
    const [study, seriesUID] = [tr.dataset.study, tr.dataset.series];
    const label = td.textContent;
    const key = `${study}/${seriesUID}`;
    if (!thumbnailBlobs.has(key)) {
      thumbnailBlobs.set(key, cod.thumbnail(study, seriesUID)
        .then((blob) => blob && { url: URL.createObjectURL(blob), type: blob.type }));
    }
    thumbnailBlobs.get(key).then((thumb) => {
      if (!thumb || !td.isConnected) return;
      const video = thumb.type.startsWith("video/");
      const media = document.createElement(video ? "video" : "img");
      media.className = "thumbnail";
      media.src = thumb.url;
      if (video) Object.assign(media, { muted: true, loop: true, playsInline: true, preload: "metadata" });
      if (video) media.setAttribute("aria-label", `Preview of series ${label}`);
      else media.alt = `Preview of series ${label}`;
      td.prepend(media);
      td.dataset.thumbnailShown = thumb.type;
    }).catch(() => { thumbnailBlobs.delete(key); td.dataset.thumbnailShown = "none"; });
  }
}, { rootMargin: "200px" });

function seriesRow(body, s) {
  const key = `${s.studyUID}/${s.seriesUID}`;
  if (wantedSeries && !wantedSeries.has(s.seriesUID)) leftOut.add(key);
  const tr = document.createElement("tr");
  tr.dataset.series = s.seriesUID;
  tr.dataset.study = s.studyUID;
  const label = [s.seriesNumber && `#${s.seriesNumber}`, s.modality, s.description].filter(Boolean).join(" ");
  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.checked = !leftOut.has(key);
  pick.setAttribute("aria-label", `Download series ${label || s.seriesUID}`);
  pick.addEventListener("change", () => pickRows([row], pick.checked));
  const bar = document.createElement("progress");
  bar.max = Math.max(1, s.sizeBytes);
  bar.value = s.savedSizeBytes;
  bar.setAttribute("aria-label", `Series ${label || s.seriesUID} progress`);
  const tdPick = cell("td", "pick");
  tdPick.append(pick);
  const tdBar = cell("td", "bar");
  tdBar.append(bar);
  const tdStatus = cell("td", `status status-${s.status}`, s.status);
  const tdDesc = cell("td", "desc", label || s.seriesUID);
  if (s.thumbnail) {
    tdDesc.dataset.thumbnail = s.thumbnail;
    thumbnails.observe(tdDesc);          // fetched when the row comes into view, never waited for
  }
  tr.append(tdPick, cell("td", "uid", s.seriesUID), tdDesc,
            cell("td", "count", String(s.instances)), cell("td", "size", s.sizeKnown === false ? "—" : fmtBytes(s.sizeBytes)), tdBar, tdStatus);
  body.append(tr);
  const row = { key, tr, bar, status: tdStatus, done: s.savedSizeBytes, pick };
  series.set(key, row);
  return row;
}

// A row for a series an archive turned out to hold (found while it streams).
function foundRow(p) {
  const table = $("series-table");
  const body = table.tBodies[0] ?? table.createTBody();
  table.hidden = false;
  return seriesRow(body, { studyUID: p.study, seriesUID: p.series, instances: p.instances, sizeBytes: 0,
                           savedSizeBytes: 0, status: p.status, sizeKnown: false });
}

// The series ticked, as SeriesInstanceUIDs; null when every one is (whole studies).
function selectedSeries() {
  if (!lastStats || leftOut.size === 0) return null;
  return lastStats.seriesDetails.filter((s) => !leftOut.has(`${s.studyUID}/${s.seriesUID}`)).map((s) => s.seriesUID);
}

function showTotals(zip = false) {
  const stats = lastStats;
  if (!stats) return;
  const picked = stats.seriesDetails.filter((s) => !leftOut.has(`${s.studyUID}/${s.seriesUID}`));
  const sum = (f) => picked.reduce((n, s) => n + f(s), 0);
  const size = sum((s) => s.sizeBytes), saved = sum((s) => s.savedSizeBytes);
  const all = picked.length === stats.seriesDetails.length;
  $("select-all").checked = all;
  $("select-all").indeterminate = !all && picked.length > 0;
  for (const head of studyRows) {
    const on = head.rows.filter((r) => r.pick.checked).length;
    head.pick.checked = on === head.rows.length;
    head.pick.indeterminate = on > 0 && on < head.rows.length;
  }
  $("summary").textContent = (all ? "" : `${picked.length} of ${stats.seriesDetails.length} series selected: `) +
    `${all ? `${picked.length} series, ` : ""}${sum((s) => s.instances)} instances, ` +
    (picked.some((s) => s.sizeKnown === false)
      ? `size known once downloaded; ${sum((s) => s.savedInstances)} instances already saved.`
      : `${fmtBytes(size)}` + (saved && !zip ? `; ${fmtBytes(saved)} already saved, ${fmtBytes(size - saved)} to download.` : "."));
}

// The layout and manifest chosen on the page, as download()'s options.
function naming() {
  const choice = $("layout").value;
  const layout = choice === "template" ? $("template").value.trim() : choice;
  if (!layout) throw new Error("Enter a template, for example %PatientID/%StudyInstanceUID/%SeriesInstanceUID.");
  return { layout, manifest: $("write-manifest").checked };
}

async function check(zip = false) {
  clearErrors();
  cod.initSource(sourceDetails());
  const uids = studyUIDs();
  const archive = sourceKind() === "archive";       // study UIDs optional: they narrow what is kept
  if (!uids.length && !archive) throw new Error("Enter at least one Study UID.");
  $("summary").textContent = "Checking the bucket…";
  const stats = await cod.getStats(uids, { layout: naming().layout });   // what is saved, in this layout
  lastStats = stats;
  renderSeries(stats);
  showTotals(zip);
  if (archive) $("summary").textContent = "An archive says what it holds only as it is read: its series appear below as they are found.";
  for (const w of stats.warnings) showError(w);
  return stats;
}

function setRunning(running) {
  for (const id of ["check", "choose-folder", "download", "download-zip", "verify"]) $(id).disabled = running;
  if (!running) $("download").disabled = $("verify").disabled = !folderChosen;
  $("pause").disabled = !running;
  $("cancel").disabled = !running;
  $("pause").textContent = "Pause";
}

// Verify: the chosen folder against the bucket, nothing downloaded. What is
// missing or changed leaves log.json, so Download then fetches exactly that.
async function verify() {
  setRunning(true);
  try {
    await check();
    const picked = selectedSeries();
    const report = await cod.verifyFolder(studyUIDs(), picked ? { series: picked } : {});
    const bad = report.missing.length + report.changed.length;
    $("verify-summary").textContent = `${report.ok} files whole, ${report.missing.length} missing, ` +
      `${report.changed.length} changed, ${report.extra.length} extra.` +
      (bad ? ` Download fetches the ${bad} missing or changed file${bad > 1 ? "s" : ""} again.` : "");
    const items = [
      ...report.missing.map((p) => `missing: ${p}`),
      ...report.changed.map((c) => `changed: ${c.path} (${c.problem})`),
      ...report.extra.map((p) => `extra: ${p}`),
      ...report.errors.map((e) => `not checked: ${e}`),
    ];
    $("verify-list").replaceChildren(...items.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    $("verify-report").hidden = false;
    document.body.dataset.verified = report.clean ? "clean" : "problems";
  } catch (e) {
    showError(e.message ?? String(e));
    document.body.dataset.verified = "error";
  } finally {
    setRunning(false);
  }
}

async function run(zip) {
  setRunning(true);
  delete document.body.dataset.jobState;           // this run's outcome, when it has one
  try {
    await check(zip);
    const picked = selectedSeries();
    if (picked && picked.length === 0) throw new Error("No series is selected: tick at least one.");
    job = await cod.download(studyUIDs(), zip, { ...(picked ? { series: picked } : {}), ...naming() });
    job.onProgress((p) => {
      if (p.jobBytesTotal) $("overall").value = p.jobBytesDone / p.jobBytesTotal;
      else $("overall").removeAttribute("value");          // a total not known in advance (DICOMweb)
      $("overall-text").textContent = p.jobSummary;      // rate and time left from the job's view
    });
    job.onSave((p) => {
      const row = series.get(`${p.study}/${p.series}`);
      if (row) { row.done += p.size; row.bar.value = row.done; }
    });
    job.onSeries((p) => {
      const row = series.get(p.key) ?? (p.status === "downloading" ? foundRow(p) : null);   // an archive's
      if (!row) return;
      row.status.textContent = p.status;
      row.status.className = `status status-${p.status}`;
      if (p.status === "saved") row.bar.value = row.bar.max;
    });
    job.onError((p) => showError(p.error.message));
    const result = await job.start();
    for (const skipped of result.skipped ?? []) showError(`skipped ${skipped.name}: ${skipped.why}`);
    const failed = result.failed.length;
    $("overall").value = result.bytesTotal ? result.bytesDone / result.bytesTotal : 1;
    $("overall-text").textContent = (result.cancelled ? "Cancelled. " : failed ? "Finished with problems. " : "Done. ") +
      (result.bytesTotal ? `${fmtBytes(result.bytesDone)} of ${fmtBytes(result.bytesTotal)} (${Math.floor($("overall").value * 100)} %) `
        : `${fmtBytes(result.bytesDone)} `) +
      `in ${fmtTime(result.seconds)}; ${result.succeeded.length} series saved` + (failed ? `, ${failed} failed.` : ".") +
      (zip && !result.cancelled && result.succeeded.length ? " The zip files (one per study) went to your Downloads folder." : "");
    document.body.dataset.jobState = result.cancelled ? "cancelled" : failed ? "failed" : "done";
  } catch (e) {
    showError(e.message ?? String(e));
    document.body.dataset.jobState = "error";
  } finally {
    setRunning(false);
  }
}

async function main() {
  fillFromQuery();
  $("select-all").addEventListener("change", () =>     // the series in view (see the filter)
    pickRows([...series.values()].filter((row) => !row.tr.hidden), $("select-all").checked));
  const pickerProblem = folderPickerProblem();
  if (pickerProblem && pickerProblem.kind !== "no-user-gesture") {
    if (pickerProblem.kind !== "no-folder-picker") $("picker-note").textContent = pickerProblem.message;
    $("picker-note").hidden = false;
    $("choose-folder").disabled = true;
  }
  // A portal that opened (or frames) this page can hand the token over by postMessage
  // ({type: "cod-retrieve-token", token}); it never enters a URL.
  const messages = tokenFromMessages();
  messages.ontoken = (token) => { $("token").value = token; $("dicomweb-token").value = token; };
  try {
    cod = await createCodDownload({ apiBase: params.get("api") || $("api").value || undefined,
                                    getToken: () => messages.getToken() });
  } catch (e) {
    $("runtime-status").textContent = `The downloader could not start: ${e.message ?? e}`;
    return;
  }
  $("runtime-status").textContent = "Ready.";

  $("layout").addEventListener("change", () => {
    $("template-label").hidden = $("layout").value !== "template";
    if (!$("template-label").hidden) $("template").focus();
  });
  $("source").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await check(); } catch (e) { showError(e.message ?? String(e)); $("summary").textContent = ""; }
  });
  $("choose-folder").addEventListener("click", async () => {
    try {
      const handle = await cod.initDirectory();
      folderChosen = true;
      $("download").disabled = $("verify").disabled = false;
      $("folder-name").textContent = `Saving into folder “${handle.name}”.`;
    } catch (e) {
      if (e.name !== "AbortError") showError(e.message ?? String(e));
    }
  });
  $("download").addEventListener("click", () => run(false));
  $("verify").addEventListener("click", () => verify());
  $("filter").addEventListener("input", applyFilter);
  $("manifest").addEventListener("change", () => { if ($("manifest").files[0]) loadManifest($("manifest").files[0]); });
  $("download-zip").addEventListener("click", () => run(true));
  $("pause").addEventListener("click", () => {
    if (!job) return;
    if (job.state === "paused") { job.resume(); $("pause").textContent = "Pause"; }
    else { job.pause(); $("pause").textContent = "Resume"; }
  });
  $("cancel").addEventListener("click", () => job?.cancel());
  // After a reload or crash, the folder picked last time (kept in IndexedDB) resumes
  // where it stopped; the browser asks for permission again on this click.
  const previous = await storedDirectoryHandle();
  if (previous) {
    $("previous-folder").hidden = false;
    $("previous-folder").textContent = `Use previous folder “${previous.name}”`;
    $("previous-folder").addEventListener("click", async () => {
      try {
        await cod.useDirectory(previous);
        folderChosen = true;
        $("download").disabled = $("verify").disabled = false;
        $("folder-name").textContent = `Saving into folder “${previous.name}” (already saved files are kept).`;
      } catch (e) {
        showError(`The previous folder cannot be used: ${e.message ?? e}`);
      }
    });
  }
  document.body.dataset.ready = "1";
}

main();
