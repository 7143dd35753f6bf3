// <cod-retrieve-download>: the full download progress view as a custom element.
//
//   <script type="module" src="https://SITE/cod-retrieve-element.mjs"></script>
//   <cod-retrieve-download api="https://storage.googleapis.com" bucket="my-bucket"
//       prefix="my/prefix/dicomweb" studies="1.2.3 1.2.4"></cod-retrieve-download>
//   el.getToken = async () => (await auth.token());   // or el.token = "..."
//
// Attributes (reflected by properties of the same name): api, bucket, prefix,
// studies (space/comma separated; property `studyUIDs` takes an array), zip
// (default mode of start() and the only offered mode when present), concurrency,
// token (prefer the property or getToken: attributes show in the DOM).
// Methods: start({zip}) -> Promise<CompleteEvent>, cancel(), pause(), resume().
// Events (detail = the Job callback payload): progress, series (every status),
// series-saved, save, complete, error. All bubble and cross the shadow boundary,
// except `error`, which stays on the element (a bubbling "error" would reach window.onerror).
//
// Theming (CSS custom properties, set on the element or any ancestor):
//   --cod-font, --cod-font-size, --cod-fg, --cod-muted, --cod-bg, --cod-border,
//   --cod-radius, --cod-gap, --cod-bar-height, --cod-bar-bg, --cod-bar-fill,
//   --cod-bar-done, --cod-bar-failed, --cod-error, --cod-button-bg, --cod-button-fg,
//   --cod-button-border. Parts: root, controls, button, overall, bar, series, errors.
import { createCodDownload, folderPickerProblem } from "./cod-retrieve.mjs";
import { fmtBytes, fmtTime, splitUIDs } from "./format.mjs";

const STYLE = `
:host {
  display: block;
  font-family: var(--cod-font, system-ui, sans-serif);
  font-size: var(--cod-font-size, 0.95rem);
  color: var(--cod-fg, #1b1f24);
  container-type: inline-size;
  min-width: 0;
}
:host([hidden]) { display: none; }
.root {
  background: var(--cod-bg, transparent);
  border: 1px solid var(--cod-border, #d0d7de);
  border-radius: var(--cod-radius, 6px);
  padding: var(--cod-gap, 0.75rem);
  display: grid;
  gap: var(--cod-gap, 0.75rem);
  min-width: 0;
}
.controls { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
button {
  font: inherit;
  color: var(--cod-button-fg, inherit);
  background: var(--cod-button-bg, #f6f8fa);
  border: 1px solid var(--cod-button-border, var(--cod-border, #d0d7de));
  border-radius: var(--cod-radius, 6px);
  padding: 0.35em 0.9em;
  cursor: pointer;
}
button:disabled { opacity: 0.5; cursor: default; }
button[hidden] { display: none; }
.bar {
  height: var(--cod-bar-height, 0.6rem);
  background: var(--cod-bar-bg, #eaeef2);
  border-radius: var(--cod-radius, 6px);
  overflow: hidden;
  min-width: 3rem;
}
.fill {
  height: 100%;
  width: 0%;
  background: var(--cod-bar-fill, #0969da);
  transition: width 0.2s linear;
}
.saved .fill { background: var(--cod-bar-done, #1a7f37); }
.failed .fill, .cancelled .fill { background: var(--cod-bar-failed, #cf222e); }
.text, .status, .desc { color: var(--cod-muted, #57606a); overflow-wrap: anywhere; }
.overall { display: grid; gap: 0.3rem; }
ul { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.4rem; }
.series li {
  display: grid;
  grid-template-columns: minmax(0, 2fr) minmax(3rem, 3fr) minmax(5.5rem, auto);
  gap: 0.5rem;
  align-items: center;
}
.series .name { min-width: 0; overflow-wrap: anywhere; }
.series .status { text-align: end; }
.series li.failed .status { color: var(--cod-error, #cf222e); }
.errors li { color: var(--cod-error, #cf222e); overflow-wrap: anywhere; }
@container (max-width: 28rem) {
  .series li { grid-template-columns: minmax(0, 1fr) auto; }
  .series .bar { grid-column: 1 / -1; grid-row: 2; }
}
`;




function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "part") node.setAttribute("part", v);
    else if (k.startsWith("aria-") || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

export class CodRetrieveDownload extends HTMLElement {
  static observedAttributes = ["api", "bucket", "prefix", "studies", "series", "zip", "concurrency", "layout", "manifest"];

  constructor() {
    super();
    this._studyUIDs = null;
    this._token = null;
    this.getToken = null;
    this.directoryHandle = null;
    this._cod = null;
    this._codKey = null;
    this._job = null;
    this._rows = new Map();
    const root = this.attachShadow({ mode: "open" });
    const style = el("style");
    style.textContent = STYLE;
    this._folderButton = el("button", { type: "button", part: "button folder-button", textContent: "Download to folder" });
    this._zipButton = el("button", { type: "button", part: "button zip-button", textContent: "Download zip" });
    this._pauseButton = el("button", { type: "button", part: "button", textContent: "Pause", disabled: true });
    this._cancelButton = el("button", { type: "button", part: "button", textContent: "Cancel", disabled: true });
    this._fill = el("div", { class: "fill" });
    this._bar = el("div", { class: "bar", part: "bar", role: "progressbar", "aria-label": "Overall progress",
                            "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, this._fill);
    this._text = el("div", { class: "text", role: "status" });
    this._series = el("ul", { class: "series", part: "series", "aria-label": "Series" });
    this._errors = el("ul", { class: "errors", part: "errors", role: "alert" });
    root.append(style, el("div", { class: "root", part: "root" },
      el("div", { class: "controls", part: "controls" },
        this._folderButton, this._zipButton, this._pauseButton, this._cancelButton),
      el("div", { class: "overall", part: "overall" }, this._bar, this._text),
      this._series, this._errors));
    this._folderButton.addEventListener("click", () => this.start({ zip: false }).catch(() => {}));
    this._zipButton.addEventListener("click", () => this.start({ zip: true }).catch(() => {}));
    this._pauseButton.addEventListener("click", () => {
      if (this._job?.state === "paused") this.resume(); else this.pause();
    });
    this._cancelButton.addEventListener("click", () => this.cancel());
  }

  connectedCallback() {
    this._updateButtons();
  }

  attributeChangedCallback() {
    this._updateButtons();
  }

  // ---- configuration
  get api() { return this.getAttribute("api") || ""; }
  set api(v) { this.setAttribute("api", v ?? ""); }
  get bucket() { return this.getAttribute("bucket") || ""; }
  set bucket(v) { this.setAttribute("bucket", v ?? ""); }
  get prefix() { return this.getAttribute("prefix") || ""; }
  set prefix(v) { this.setAttribute("prefix", v ?? ""); }
  get studies() { return this.getAttribute("studies") || ""; }
  set studies(v) { this._studyUIDs = null; this.setAttribute("studies", Array.isArray(v) ? v.join(" ") : (v ?? "")); }
  get studyUIDs() { return this._studyUIDs ? [...this._studyUIDs] : splitUIDs(this.studies); }
  set studyUIDs(v) { this._studyUIDs = v == null ? null : splitUIDs(Array.isArray(v) ? v.join(" ") : v); }
  // Only these SeriesInstanceUIDs of the studies (a basket); empty: whole studies.
  get series() { return this.getAttribute("series") || ""; }
  set series(v) { this.setAttribute("series", Array.isArray(v) ? v.join(" ") : (v ?? "")); }
  get seriesUIDs() { return splitUIDs(this.series); }
  // Where files land: "classic" (default), "descriptive", "media" or a %Keyword template.
  get layout() { return this.getAttribute("layout") || ""; }
  set layout(v) { this.setAttribute("layout", v ?? ""); }
  get manifest() { return this.hasAttribute("manifest") && this.getAttribute("manifest") !== "false"; }
  set manifest(v) { this.toggleAttribute("manifest", Boolean(v)); }
  get zip() { return this.hasAttribute("zip") && this.getAttribute("zip") !== "false"; }
  set zip(v) { this.toggleAttribute("zip", Boolean(v)); }
  get concurrency() { return Number(this.getAttribute("concurrency")) || undefined; }
  set concurrency(v) { this.setAttribute("concurrency", String(v)); }
  get token() { return this._token ?? this.getAttribute("token") ?? null; }
  set token(v) { this._token = v || null; }
  get state() { return this._job?.state ?? "idle"; }
  get codDownload() { return this._cod; }

  // ---- control
  pause() { this._job?.pause(); this._pauseButton.textContent = "Resume"; }
  resume() { this._job?.resume(); this._pauseButton.textContent = "Pause"; }
  cancel() { this._job?.cancel(); }

  async _codDownload() {
    const key = `${this.api}|${this.concurrency ?? ""}`;
    if (!this._cod || this._codKey !== key) {
      this._cod = await createCodDownload({
        apiBase: this.api || undefined,
        concurrency: this.concurrency,
        getToken: () => (this.getToken ? this.getToken() : null),
      });
      this._codKey = key;
    }
    return this._cod;
  }

  /** Downloads the configured studies; resolves with the onComplete payload. */
  async start({ zip } = {}) {
    zip = zip ?? this.zip;
    if (this._job && (this._job.state === "running" || this._job.state === "paused")) {
      throw new Error("a download is already running");
    }
    this._clear();
    this._running(true);
    try {
      const uids = this.studyUIDs;
      if (!this.bucket) throw Object.assign(new Error("No bucket: set the bucket attribute."), { kind: "config" });
      if (!uids.length) throw Object.assign(new Error("No study UIDs: set the studies attribute or the studyUIDs property."), { kind: "config" });
      let handle = this.directoryHandle;
      if (!zip && !handle) {
        // The picker first, while the click's user activation is still fresh.
        const problem = folderPickerProblem();
        if (problem) {
          this._offerZip(problem);
          throw Object.assign(new Error(problem.message), { kind: problem.kind });
        }
        handle = await window.showDirectoryPicker({ mode: "readwrite" });
      }
      this._text.textContent = "Loading the downloader…";
      const cod = await this._codDownload();
      if (!zip) await cod.useDirectory(handle);
      cod.initBucket({ bucket: this.bucket, bucketPrefix: this.prefix || null, token: this.token });
      this._text.textContent = "Checking the bucket…";
      const selection = this.seriesUIDs.length ? { series: this.seriesUIDs } : {};
      if (this.layout) selection.layout = this.layout;
      const stats = await cod.getStats(uids, selection);
      this._renderSeries(stats);
      for (const w of stats.warnings) this._showError(w);
      this.dispatchEvent(new CustomEvent("stats", { detail: stats, bubbles: true, composed: true }));
      const job = await cod.download(uids, zip, { ...selection, manifest: this.manifest });
      this._job = job;
      this._wire(job, zip);
      const result = await job.start();
      this._finish(result, zip);
      return result;
    } catch (e) {
      if (e?.name === "AbortError") {
        this._text.textContent = "No folder chosen.";
      } else {
        this._showError(e?.message ?? String(e));
        const error = e instanceof Error ? e : new Error(String(e));
        this._emit("error", { url: null, error, kind: error.kind ?? error.name, study: null, series: null, instance: null });
      }
      this.dataset.state = "error";
      throw e;
    } finally {
      this._running(false);
    }
  }

  // ---- view
  _emit(type, detail) {
    const bubbles = type !== "error";
    return this.dispatchEvent(new CustomEvent(type, { detail, bubbles, composed: bubbles }));
  }

  _updateButtons() {
    const zipOnly = this.zip;
    const problem = folderPickerProblem();
    const noFolder = problem && problem.kind !== "no-user-gesture";
    this._folderButton.hidden = zipOnly || Boolean(noFolder);
  }

  _offerZip(problem) {
    this._folderButton.hidden = problem.kind !== "no-user-gesture";
    this._zipButton.hidden = false;
    this._zipButton.focus?.();
  }

  _running(on) {
    this._folderButton.disabled = on;
    this._zipButton.disabled = on;
    this._pauseButton.disabled = !on;
    this._cancelButton.disabled = !on;
    if (!on) this._pauseButton.textContent = "Pause";
    if (on) this.dataset.state = "running";
  }

  _clear() {
    this._errors.replaceChildren();
    this._series.replaceChildren();
    this._rows = new Map();
    this._setBar(this._bar, this._fill, 0);
    this._text.textContent = "";
    delete this.dataset.state;
  }

  _setBar(bar, fill, frac) {
    const pct = Math.max(0, Math.min(100, frac * 100));
    fill.style.width = `${pct}%`;
    bar.setAttribute("aria-valuenow", String(Math.floor(pct)));
  }

  _showError(text) {
    this._errors.append(el("li", { textContent: text }));
  }

  _renderSeries(stats) {
    for (const s of stats.seriesDetails) {
      const fill = el("div", { class: "fill" });
      const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                               "aria-label": `Series ${s.seriesUID}` }, fill);
      const status = el("span", { class: "status", textContent: s.status });
      const label = [s.modality, s.description].filter(Boolean).join(" ");
      const name = el("div", { class: "name" },
        el("div", { textContent: label || `Series ${s.seriesNumber ?? ""}`.trim() }),
        el("div", { class: "desc", textContent: `${s.instances} instances, ${fmtBytes(s.sizeBytes)} · ${s.seriesUID}` }));
      const li = el("li", { class: s.status }, name, bar, status);
      li.dataset.series = s.seriesUID;
      li.dataset.status = s.status;
      this._series.append(li);
      const row = { li, bar, fill, status, size: Math.max(1, s.sizeBytes), done: s.savedSizeBytes };
      this._setBar(bar, fill, row.done / row.size);
      this._rows.set(`${s.studyUID}/${s.seriesUID}`, row);
    }
    const left = stats.totalSizeBytes - stats.totalSavedSizeBytes;
    this._text.textContent = `${stats.totalSeriesCount} series, ${stats.totalInstanceCount} instances, ` +
      `${fmtBytes(stats.totalSizeBytes)}` + (stats.totalSavedSizeBytes ? `; ${fmtBytes(left)} to download.` : ".");
  }

  _wire(job, zip) {
    job.onProgress((p) => {
      this._setBar(this._bar, this._fill, p.jobBytesTotal ? p.jobBytesDone / p.jobBytesTotal : 1);
      this._text.textContent = p.jobSummary;             // rate and time left from the job's view
      this._emit("progress", p);
    });
    job.onSave((p) => {
      const row = this._rows.get(`${p.study}/${p.series}`);
      if (row) { row.done += p.size; this._setBar(row.bar, row.fill, row.done / row.size); }
      this._emit("save", p);
    });
    job.onSeries((p) => {
      const row = this._rows.get(p.key);
      if (row) {
        row.status.textContent = p.status;
        row.li.className = p.status;
        row.li.dataset.status = p.status;
        if (p.status === "saved") this._setBar(row.bar, row.fill, 1);
      }
      this._emit("series", p);
      if (p.status === "saved") this._emit("series-saved", p);
    });
    job.onError((p) => {
      this._showError(p.error.message);
      this._emit("error", p);
    });
    job.onComplete((p) => this._emit("complete", p));
    this._zipMode = zip;
  }

  _finish(result, zip) {
    const failed = result.failed.length;
    const frac = result.bytesTotal ? result.bytesDone / result.bytesTotal : 1;
    this._setBar(this._bar, this._fill, frac);
    this._text.textContent = (result.cancelled ? "Cancelled. " : failed ? "Finished with problems. " : "Done. ") +
      `${fmtBytes(result.bytesDone)} of ${fmtBytes(result.bytesTotal)} (${Math.floor(frac * 100)} %) ` +
      `in ${fmtTime(result.seconds)}; ${result.succeeded.length} series saved` + (failed ? `, ${failed} failed.` : ".") +
      (zip && !result.cancelled && result.succeeded.length ? " The zip files (one per study) went to your Downloads folder." : "");
    this.dataset.state = result.cancelled ? "cancelled" : failed ? "failed" : "done";
  }
}

if (!customElements.get("cod-retrieve-download")) {
  customElements.define("cod-retrieve-download", CodRetrieveDownload);
}

export default CodRetrieveDownload;
