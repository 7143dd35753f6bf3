// Type declarations for cod-retrieve-element.mjs: the <cod-retrieve-download> element.
import type {
  CodDownload, CompletePayload, DownloadStats, ErrorPayload, ProgressPayload, SavePayload, SeriesPayload,
  TokenProvider,
} from "./cod-retrieve";

export interface CodRetrieveDownloadEventMap {
  progress: CustomEvent<ProgressPayload>;
  series: CustomEvent<SeriesPayload>;
  "series-saved": CustomEvent<SeriesPayload>;
  save: CustomEvent<SavePayload>;
  stats: CustomEvent<DownloadStats>;
  complete: CustomEvent<CompletePayload>;
  /** Does not bubble (listen on the element). */
  error: CustomEvent<ErrorPayload>;
}

export declare class CodRetrieveDownload extends HTMLElement {
  /** Storage API origin (attribute `api`). */
  api: string;
  bucket: string;
  /** Datastore prefix, used as given (attribute `prefix`). */
  prefix: string;
  /** Space or comma separated Study UIDs (attribute `studies`). */
  studies: string;
  /** Study UIDs as an array; overrides `studies` when set. */
  studyUIDs: string[];
  /** Space or comma separated SeriesInstanceUIDs to take of the studies (attribute `series`);
   *  empty: whole studies. */
  series: string;
  readonly seriesUIDs: string[];
  /** Where files land (attribute `layout`): "classic" (default), "descriptive", "media" or a %Keyword template. */
  layout: string;
  /** Write cod-manifest.csv after the job (attribute `manifest`). */
  manifest: boolean;
  /** Default mode of start(); when the attribute is present only zip is offered. */
  zip: boolean;
  concurrency: number | undefined;
  /** Bearer token (prefer this property or getToken to the attribute). */
  token: string | null;
  getToken: TokenProvider | null;
  /** Write into this folder instead of asking with the picker. */
  directoryHandle: FileSystemDirectoryHandle | null;
  readonly state: "idle" | "new" | "running" | "paused" | "done" | "cancelled";
  readonly codDownload: CodDownload | null;
  /** Downloads the studies; rejects on setup problems (folder picker limits, bucket, listing). */
  start(options?: { zip?: boolean }): Promise<CompletePayload>;
  pause(): void;
  resume(): void;
  cancel(): void;
  addEventListener<K extends keyof CodRetrieveDownloadEventMap>(
    type: K, listener: (this: CodRetrieveDownload, ev: CodRetrieveDownloadEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener<K extends keyof HTMLElementEventMap>(
    type: K, listener: (this: HTMLElement, ev: HTMLElementEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof CodRetrieveDownloadEventMap>(
    type: K, listener: (this: CodRetrieveDownload, ev: CodRetrieveDownloadEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions): void;
  removeEventListener<K extends keyof HTMLElementEventMap>(
    type: K, listener: (this: HTMLElement, ev: HTMLElementEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions): void;
}

export default CodRetrieveDownload;

declare global {
  interface HTMLElementTagNameMap {
    "cod-retrieve-download": CodRetrieveDownload;
  }
}
