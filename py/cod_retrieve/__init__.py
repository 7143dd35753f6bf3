"""Cloud Optimized DICOM retrieval: streamed, verified, runtime-neutral."""
