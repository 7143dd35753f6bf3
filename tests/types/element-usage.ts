// The custom element as a TypeScript portal would drive it.
import "../../web/cod-retrieve-element";
import { createCodDownload, type CompletePayload } from "../../web/cod-retrieve";

async function portal(getAuthToken: () => Promise<string>) {
  const el = document.createElement("cod-retrieve-download");
  el.api = "https://storage.googleapis.com";
  el.bucket = "my-bucket";
  el.prefix = "my/prefix/dicomweb";
  el.studyUIDs = ["1.2.3", "1.2.4"];
  el.getToken = getAuthToken;
  el.addEventListener("progress", (e) => console.log(e.detail.jobBytesDone, e.detail.jobBytesTotal));
  el.addEventListener("series-saved", (e) => console.log(e.detail.key, e.detail.status));
  el.addEventListener("complete", (e) => console.log(e.detail.succeeded.length));
  el.addEventListener("error", (e) => console.log(e.detail.error.message, e.detail.kind));
  document.body.append(el);
  const result: CompletePayload = await el.start({ zip: true });
  console.log(result.failed);

  const cod = await createCodDownload({ getToken: getAuthToken, concurrency: 2, retry: { attempts: 3 } });
  cod.onError(({ kind, error }) => console.warn(kind, error.message));
  const problem = cod.folderPickerProblem();
  if (problem) console.log(problem.kind);
  await cod.initDirectory({ privateStorage: true });
  cod.initBucket("https://my-domain.com/my-bucket/my/prefix");
  const job = await cod.download(["1.2.3"], false);
  job.onSeries(({ key, status }) => console.log(key, status)).onComplete(({ bytesDone }) => console.log(bytesDone));
  job.pause();
  job.resume();
  job.cancel();
}

void portal(async () => "token");
