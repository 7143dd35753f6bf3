// Wrong uses that tsc must reject (tests/e2e/test_embed_types.py checks each line).
import { createCodDownload } from "../../web/cod-retrieve";

async function wrong() {
  const codDownload = await createCodDownload({ apiBase: "https://storage.googleapis.com" });
  codDownload.initBuckett({ bucket: "b", bucketPrefix: null, token: null }); // WRONG: misspelt method
  const job = await codDownload.download("1.2.3"); // WRONG: one string, not an array
  job.onProgress(({ bytesDownloadedd }) => console.log(bytesDownloadedd)); // WRONG: no such payload field
  job.onError(({ error }) => console.log(error.mesage)); // WRONG: misspelt Error property
  codDownload.initBucket({ bucket: "b", prefix: "p", token: null }); // WRONG: bucketPrefix, not prefix
  await createCodDownload({ concurency: 3 }); // WRONG: misspelt option
  codDownload.initSource({ dicomweb: 42 }); // WRONG: a URL string, not a number
  await codDownload.download(["1.2.3"], false, { dump: "pixels" }); // WRONG: true or "frames"
  await createCodDownload({ manifest: "yes" }); // WRONG: a boolean
}

void wrong();
