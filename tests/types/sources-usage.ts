// A portal's use of what came after the original: sources, a basket, layouts, the
// manifest, a dump, thumbnails. Type-checked with `tsc --noEmit --strict` by
// tests/e2e/test_embed_types.py.
import { createCodDownload } from "../../web/cod-retrieve";
import type { CompletePayload, DownloadStats, FolderReport, SourceDetails } from "../../web/cod-retrieve";

async function portal(study: string, picked: string[]): Promise<void> {
  const cod = await createCodDownload({ layout: "descriptive", manifest: true, worker: true });
  const sources: SourceDetails[] = [
    { dicomweb: "https://pacs.example.org/dicom-web", token: "t" },
    { archive: "https://xnat.example.org/data/experiments/E1/scans/ALL/files?format=zip" },
    { bucket: "b", bucketPrefix: "p/dicomweb", token: null },
    "https://storage.example.org/b/p?token=t",
  ];
  cod.initSource(sources[0]);
  const stats: DownloadStats = await cod.getStats([study], { series: picked, layout: "media" });
  for (const s of stats.seriesDetails) {
    const size: string = s.sizeKnown ? `${s.sizeBytes} bytes` : "known once downloaded";
    const thumb: Blob | null = s.thumbnail ? await cod.thumbnail(s.studyUID, s.seriesUID) : null;
    console.log(size, thumb?.type);
  }
  const job = await cod.download([study], false, { series: picked, layout: "%PatientID/%SeriesInstanceUID",
                                                    manifest: true, dump: "frames" });
  job.onComplete((done: CompletePayload) => {
    for (const s of done.skipped ?? []) console.log(s.name, s.why);
  });
  await job.start();
  const report: FolderReport = await cod.verifyFolder([study]);
  console.log(report.clean);
}

void portal("1.2.3", ["1.2.3.4"]);
