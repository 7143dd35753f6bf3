// The usage example of the original cod-retrieve README, changed only where the
// drop-in replacement needs it: the import, and `await createCodDownload(...)`
// instead of the library's default instance. Type-checked with
// `tsc --noEmit --strict` by tests/e2e/test_embed_types.py.
import { createCodDownload } from "../../web/cod-retrieve";

async function downloadStudy() {
  const codDownload = await createCodDownload({ apiBase: "https://storage.googleapis.com" });

  // Initialize the local directory to save files
  await codDownload.initDirectory();

  // Initialize the cloud bucket details (can be a URL string or object)
  codDownload.initBucket({
    bucket: "my-bucket",
    bucketPrefix: "my-prefix/with/dicomweb",
    token: "my-token",
  });

  // Specify the study instance UIDs to download
  const studyInstanceUIDs = ["1.2.840.113619.2.55.3.604688432.1234.1597851234.1"];

  // Get download statistics
  const stats = await codDownload.getStats(studyInstanceUIDs);
  console.log("Download stats:", stats);

  // Create the download job
  const job = await codDownload.download(studyInstanceUIDs);

  // Register callbacks to monitor progress
  let downloaded = 0;
  job.onProgress(({ url, bytesDownloaded, bytesTotal }) => {
    downloaded += bytesDownloaded;
    console.log(`Downloading ${url}... ${downloaded} / ${bytesTotal} bytes`);
  });

  job.onDownload(({ url, size, file }) => {
    console.log(`Downloaded: ${url} (${size} bytes)`, file);
  });

  job.onExtract(({ url, files }) => {
    console.log(`Extracted files from: ${url}`, files);
  });

  job.onSave(({ url, file }) => {
    console.log(`Saved file: ${url}`, file);
  });

  job.onComplete(() => {
    console.log("Download job completed.");
  });

  job.onError(({ url, error }) => {
    console.error(`Error downloading ${url}:`, error.message);
  });

  // Start the job
  await job.start();
}

downloadStudy().catch(console.error);
