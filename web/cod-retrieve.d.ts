// Type declarations for cod-retrieve.mjs (the ES module of the hosted site) and
// cod-retrieve-element.mjs (the <cod-retrieve-download> custom element).
//
// Code written against the original TypeScript library `cod-retrieve` type-checks
// after two changes: import from this module, and `await createCodDownload(...)`
// instead of using the default instance.

/** A value the Python side leaves out: Python's None reaches JavaScript as undefined. */
export type Maybe<T> = T | null | undefined;

// ------------------------------------------------------------------ options
/** Retry behaviour of every bucket request (seconds; names as in the Python package). */
export interface RetryOptions {
  /** Tries per request, the first one included. Default 6. */
  attempts?: number;
  /** First back-off delay in seconds, doubled per failure (full jitter). Default 0.5. */
  base_delay?: number;
  /** Longest back-off delay in seconds. Default 20. */
  max_delay?: number;
  /** Seconds without a byte before a transfer is aborted and resumed with Range. Default 30. */
  stall_timeout?: number;
}

/** Supplies a bearer token: called when none was given, and again when one is refused (401/403). */
export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

export interface CreateCodDownloadOptions {
  /** Storage API origin. Default "https://storage.googleapis.com". */
  apiBase?: string;
  /** Series downloaded at the same time. Default 3. */
  concurrency?: number;
  /** The portal's auth service: a token on demand, a fresh one when refused. */
  getToken?: TokenProvider;
  retry?: RetryOptions;
  /** Times one failed instance is fetched again alone, by its byte range. Default 3. */
  instance_retries?: number;
  /** File writes in flight at once (their bytes stay bounded at 64 MB). Default 32. */
  writes_in_flight?: number;
  /** Problems outside a job (folder picker unavailable, no user gesture, cross-origin iframe). */
  onError?: ErrorCallbackFn;
  /** Where zip mode builds each zip. Default: the first that works of an OPFS spool, a
   *  service-worker stream into the download, memory (at most 1 GB per job). */
  zipSpool?: "opfs" | "service-worker" | "memory";
  /** Where files land (default "classic"); see {@link Layout}. Checked at creation: a bad template rejects. */
  layout?: Layout;
  /** Write `cod-manifest.csv` after each job, beside the files and in each zip. Default false. */
  manifest?: boolean;
  /** Run Python and the jobs in a dedicated Worker (callbacks still fire on the main thread). Default true
   *  where the browser has module workers; false runs them on the page's thread. */
  worker?: boolean;
}

// ------------------------------------------------------------------ bucket
/** Object form: used as given (bucketPrefix null or "" means objects start at studies/). */
export interface BucketDetails {
  bucket: string | null;
  bucketPrefix: string | null;
  token: string | null;
}

// ------------------------------------------------------------------ stats
export type SeriesStatus = "waiting" | "downloading" | "saved" | "failed" | "cancelled";

export interface SeriesDetails {
  studyUID: string;
  seriesUID: string;
  url: string;
  instances: number;
  savedInstances: number;
  sizeBytes: number;
  savedSizeBytes: number;
  status: "waiting" | "saved" | "failed";
  error: Maybe<string>;
  modality: Maybe<string>;
  description: Maybe<string>;
  seriesNumber: Maybe<number | string>;
  /** "thumbnail.jpg" or "thumbnail.mp4" where the COD writer stored one; fetch it with CodDownload.thumbnail(). */
  thumbnail: Maybe<string>;
  /** False where the source gives no sizes before the download (DICOMweb): sizeBytes is 0 then. */
  sizeKnown: boolean;
}

export interface DownloadStats {
  // The original's fields.
  totalSeriesCount: number;
  totalSavedSeriesCount: number;
  /** Sum of DICOM sizes from metadata (not tar bytes). */
  totalSizeBytes: number;
  totalSavedSizeBytes: number;
  /** Series still to fetch, as the original labels them: "<study>/ series/ <series>.tar". Empty when all is saved. */
  series: string[];
  /** One entry per instance still to fetch: its `url` (or `uri`) from the series metadata. Empty when all is saved. */
  items: string[];
  // Additions.
  totalInstanceCount: number;
  totalSavedInstanceCount: number;
  /** "<study>/<series>" of every usable series, saved or not. */
  seriesKeys: string[];
  seriesDetails: SeriesDetails[];
  /** Skipped series, unlisted studies and the like: the rest still downloads. */
  warnings: string[];
}

/** A DICOMweb server: QIDO-RS lists, WADO-RS retrieves (`transfer-syntax=*`, the stored bytes).
 *  Sizes are not known before the download; each instance is checked by its own header. */
export interface DicomwebDetails {
  /** The service root, e.g. "https://host/dicom-web" (the server must allow this page's origin: CORS). */
  dicomweb: string;
  /** Bearer token; getToken is asked when it is refused. */
  token?: string | null;
}

/** One zip, tar or tar.gz of DICOM files at a URL (told apart by its first bytes; XNAT's
 *  `.../files?format=zip`, an NBIA tar). Read once as it streams: each DICOM file lands by its own
 *  UIDs; anything else is listed in `complete.skipped`. Traversal, links and bombs are refused.
 *  Study UIDs given to getStats/download narrow what is kept; none keeps everything. */
export interface ArchiveDetails {
  archive: string;
  token?: string | null;
}

export type SourceDetails = string | BucketDetails | DicomwebDetails | ArchiveDetails;

/** What verifyFolder found: paths relative to the folder, in the layout it was written in. */
export interface FolderReport {
  /** Files whose size and CRC32C match the metadata. */
  ok: number;
  missing: string[];
  changed: { path: string; problem: string }[];
  /** Files in a series folder that the metadata does not list. */
  extra: string[];
  /** Series or studies that could not be checked. */
  errors: string[];
  /** Nothing missing, changed or unchecked. */
  clean: boolean;
}

/**
 * Where each instance lands:
 * - "classic": `<study>/<series>/instances/<sop>.dcm`, the original's (a study zip leaves out `<study>/`);
 * - "descriptive": `<PatientID> <PatientName>/<StudyDate> <StudyDescription>/<SeriesNumber> <Modality> <SeriesDescription>/<InstanceNumber>.dcm`;
 * - "media": a DICOM PS3.10 file set, `PT000000/ST000000/SE000000/IM000000` and a `DICOMDIR` at the root
 *   (in zip mode, in each study's zip);
 * - a template of `%Keyword` fields (any DICOM keyword), e.g. `%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID`;
 *   files are `<SOPInstanceUID>.dcm` unless the last part names an instance (`%InstanceNumber.dcm`).
 * Names are made safe for Windows, macOS and Linux; two that would clash get " (2)", " (3)", ...
 * A folder keeps the layout it was first written in (log.json records it).
 */
export type Layout = "classic" | "descriptive" | "media" | (string & {});

/** What to take of the studies: `series` narrows them to these SeriesInstanceUIDs. */
export interface SelectionOptions {
  series?: string[];
  /** This call's layout; default the one given to createCodDownload. Ignored by verifyFolder (the folder's own). */
  layout?: Layout;
}

/** download()'s options: the selection, the layout, and whether to write the manifest. */
export interface DownloadOptions extends SelectionOptions {
  /** Write `cod-manifest.csv` (path, size, CRC32C and UIDs per instance; status and error per series). */
  manifest?: boolean;
  /** DICOMweb: write the server's study and series metadata (DICOM JSON) under `dump/`, and a record of
   *  every request (`dump/requests.jsonl`, folders only); "frames": each instance's frames too. */
  dump?: boolean | "frames";
}

// ------------------------------------------------------------------ job payloads
export interface ProgressPayload {
  url: string;
  /** Bytes of this chunk (a delta, as in the original). */
  bytesDownloaded: number;
  /** Bytes of this request when it is a Range request; undefined for a whole tar. */
  bytesTotal: Maybe<number>;
  /** DICOM bytes of the whole job verified so far, and in all. */
  jobBytesDone: number;
  jobBytesTotal: number;
  study: string;
  series: string;
  /** Bytes per second over the last 10 s; undefined until two samples. */
  jobRate: Maybe<number>;
  /** Seconds left at that rate; undefined until known. */
  jobSecondsLeft: Maybe<number>;
  /** The line the page, the element and the command line show, e.g.
   *  "12.5 MB of 40.0 MB (31 %) at 8.2 MB/s, 3 s left". */
  jobSummary: string;
}

export interface DownloadPayload {
  url: string;
  /** DICOM bytes of the series (the sum of its instances' sizes), as in the original. */
  size: number;
  /** Always null: the tar is streamed, never held whole in memory (the original gave its bytes). */
  file: null | undefined;
  /** Tar bytes received for the series in this job (an addition). */
  bytesReceived: number;
  study: string;
  series: string;
}

export interface ExtractedFile {
  /** As js-untar names it: "instances/<SOPInstanceUID>.dcm". No `buffer` here: see SavedFile. */
  name: string;
  size: number;
}

export interface ExtractPayload {
  url: string;
  /** DICOM bytes of the series, as onDownload's. */
  size: number;
  /** The instances of the series saved in this job. */
  files: ExtractedFile[];
  study: string;
  series: string;
}

export interface SavedFile {
  /** As js-untar names it: "instances/<SOPInstanceUID>.dcm". */
  name: string;
  size: number;
  /** The bytes just written, when the instance was written in one piece (up to 16 MB); undefined
   *  for larger instances, which are streamed to disk. Not kept after the callback returns. */
  buffer?: ArrayBuffer;
  /** Where it went: "<study>/<series>/instances/<sop>.dcm" in folder mode,
   *  "<study>.zip:<series>/instances/<sop>.dcm" in zip mode (an addition). */
  path: string;
}

export interface SavePayload {
  url: string;
  file: SavedFile;
  size: number;
  study: string;
  series: string;
  instance: string;
}

export interface FailedSeries {
  study: Maybe<string>;
  series: Maybe<string>;
  error: Maybe<string>;
}

export interface CompletePayload {
  /** The series saved: tar URL and DICOM size. */
  files: { url: string; size: number }[];
  /** "<study>/<series>" keys. */
  succeeded: string[];
  failed: FailedSeries[];
  cancelled: boolean;
  bytesDone: number;
  bytesTotal: number;
  seconds: number;
  requests: number;
  retries: number;
  /** An archive source only: its files that are not DICOM instances (or not of the studies asked for). */
  skipped?: { name: string; why: string }[];
}

/** An Error with the kind of problem (the Python exception name, or one of the limits below). */
export interface CodRetrieveError extends Error {
  kind?: string;
}

/**
 * Kinds reported outside a job by CodDownload.onError / initDirectory:
 * "no-folder-picker", "no-user-gesture", "cross-origin-iframe".
 */
export type LimitKind = "no-folder-picker" | "no-user-gesture" | "cross-origin-iframe";

export interface ErrorPayload {
  url: Maybe<string>;
  error: CodRetrieveError;
  kind: string;
  study?: Maybe<string>;
  series?: Maybe<string>;
  instance?: Maybe<string>;
}

export interface SeriesPayload {
  /** "<study>/<series>" */
  key: string;
  study: string;
  series: string;
  url: string;
  /** DICOM bytes of the series. */
  size: number;
  status: SeriesStatus;
  instances: number;
  savedInstances: number;
  error: Maybe<string>;
}

export type ProgressCallbackFn = (props: ProgressPayload) => void;
export type DownloadedCallbackFn = (props: DownloadPayload) => void;
export type ExtractedCallbackFn = (props: ExtractPayload) => void;
export type SavedCallbackFn = (props: SavePayload) => void;
export type CompletedCallbackFn = (props: CompletePayload) => void;
export type ErrorCallbackFn = (props: ErrorPayload) => void;
export type SeriesCallbackFn = (props: SeriesPayload) => void;

export type JobState = "new" | "running" | "paused" | "done" | "cancelled";

export interface Traffic {
  requests: number;
  retries: number;
  bodyBytes: number;
}

// ------------------------------------------------------------------ classes
/** A download, not yet started. Callback registrations return the job (chainable). */
export declare class Job {
  private constructor();
  onProgress(callback: ProgressCallbackFn): this;
  onDownload(callback: DownloadedCallbackFn): this;
  onExtract(callback: ExtractedCallbackFn): this;
  onSave(callback: SavedCallbackFn): this;
  onComplete(callback: CompletedCallbackFn): this;
  onError(callback: ErrorCallbackFn): this;
  onSeries(callback: SeriesCallbackFn): this;
  /** Runs the job; resolves with the same payload as onComplete (also when series failed). */
  start(): Promise<CompletePayload>;
  cancel(): void;
  pause(): void;
  resume(): void;
  readonly state: JobState;
  traffic(): Traffic;
}

export interface DirectoryChoice {
  /** Use this handle instead of showing the picker. */
  handle?: FileSystemDirectoryHandle;
  /** Use the origin-private file system (no picker, no gesture needed). */
  privateStorage?: boolean;
}

export declare class CodDownload {
  private constructor();
  readonly options: CreateCodDownloadOptions;
  directoryHandle: FileSystemDirectoryHandle | null;
  /**
   * Shows the folder picker (needs a user gesture, not in a cross-origin iframe: those
   * reject with an Error whose `kind` is a LimitKind, reported to onError too), or takes
   * the origin-private file system (`true`) or a given handle. The handle is stored in
   * IndexedDB under DIRECTORY_HANDLE_KEY.
   */
  initDirectory(usePrivateStorage?: boolean | DirectoryChoice): Promise<FileSystemDirectoryHandle>;
  useDirectory(handle: FileSystemDirectoryHandle): Promise<void>;
  initBucket(bucketDetails: string | BucketDetails): void;
  /** Where to download from: a DICOMweb server, or any form initBucket takes. Synchronous, as initBucket. */
  initSource(source: SourceDetails): void;
  /** With `options.series`, only those series of the studies (a basket). */
  getStats(studyInstanceUIDs: string[], options?: SelectionOptions): Promise<DownloadStats>;
  /** A Job, not started. Rejects, before anything is fetched, with an Error whose `name` and
   *  `kind` are "StorageFullError" when the job cannot fit where it writes (an origin-private
   *  folder or the zip spool, by `navigator.storage.estimate()`). */
  download(studyInstanceUIDs: string[], zipOutput?: boolean, options?: DownloadOptions): Promise<Job>;
  /** Checks the chosen folder against the bucket without downloading (size and CRC32C of every
   *  file). Missing and changed instances are taken out of log.json: the next download fetches them. */
  verifyFolder(studyInstanceUIDs: string[], options?: SelectionOptions): Promise<FolderReport>;
  /** The series thumbnail (image/jpeg or video/mp4) after getStats() named one, else null. Fetched only when called. */
  thumbnail(studyInstanceUID: string, seriesInstanceUID: string): Promise<Blob | null>;
  /** A shared selection read from a file's text (CSV with StudyInstanceUID and optionally
   *  SeriesInstanceUID columns, or one study UID per line); rejects naming the bad line. */
  readManifest(text: string, name?: string): Promise<{ studies: string[]; series: Maybe<string[]> }>;
  /** Problems outside a job (see LimitKind). Returns this. */
  onError(callback: ErrorCallbackFn): this;
  /** Why the folder picker cannot be shown now, or null when it can. */
  folderPickerProblem(): FolderPickerProblem | null;
}

export interface FolderPickerProblem {
  kind: LimitKind;
  message: string;
}

export declare function createCodDownload(options?: CreateCodDownloadOptions): Promise<CodDownload>;
export default createCodDownload;

/** Loads Pyodide and the Python package once per page (assets resolved relative to the module). */
export declare function loadRuntime(): Promise<unknown>;
/** How this page's Python started: from a memory snapshot kept in Cache Storage by an
 * earlier visit, or afresh (which keeps one for the next visit); null before it has. */
export interface PythonStart {
  from: "snapshot" | "fresh";
  seconds: number;
  where: "worker" | "page";
  /** Why a snapshot kept by an earlier visit was not used (cut short, another build), or null. */
  snapshotProblem: string | null;
  /** Why this fresh start kept no snapshot for the next visit, or null: no Cache Storage, or
   * it would take more than a tenth of the storage the site has left (downloads come first). */
  snapshotSkipped: string | null;
}
export declare function pythonStarted(): Promise<PythonStart | null>;
export declare function supportsFolderPicker(): boolean;
/** Why the folder picker cannot be shown now (no API, no user gesture, cross-origin iframe), or null. */
export declare function folderPickerProblem(): FolderPickerProblem | null;
export declare function storedDirectoryHandle(): Promise<FileSystemDirectoryHandle | null>;
export declare const DIRECTORY_HANDLE_KEY: "indexed_db_directory_handle_key";

// ------------------------------------------------------------------ postMessage tokens
/** Message types of the token handover between a portal and the viewer route page. */
export declare const TOKEN_MESSAGE: "cod-retrieve-token";
export declare const READY_MESSAGE: "cod-retrieve-ready";
export declare const TOKEN_REQUEST_MESSAGE: "cod-retrieve-token-request";

export interface TokenMessage {
  type: "cod-retrieve-token";
  token: string;
}

export interface MessageTokenSource {
  /** The last token received, or null. */
  readonly token: string | null;
  /** Called with each token received. */
  ontoken: ((token: string) => void) | null;
  /** A TokenProvider: the newest token, or asks the opener/parent for one (null after the timeout). */
  getToken(): Promise<string | null>;
  close(): void;
}

/**
 * Accepts `{type: "cod-retrieve-token", token}` messages from window.opener or
 * window.parent only, announces itself with `{type: "cod-retrieve-ready"}` and asks for a
 * fresh token with `{type: "cod-retrieve-token-request"}`.
 */
export declare function tokenFromMessages(options?: { timeoutMs?: number }): MessageTokenSource;
