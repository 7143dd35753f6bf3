"""The payload keys of every callback and of DownloadStats, as the README's
compatibility table lists them: the original's keys first, then ours. One
place for the tests that check what a portal receives."""

ORIGINAL = {
    "progress": {"url", "bytesDownloaded", "bytesTotal"},
    "download": {"url", "size", "file"},
    "extract": {"url", "size", "files"},
    "save": {"url", "file"},
    "complete": {"files"},
    "error": {"url", "error"},
    "stats": {"totalSeriesCount", "totalSavedSeriesCount", "totalSizeBytes", "totalSavedSizeBytes", "series", "items"},
}

ADDED = {
    "progress": {"jobBytesDone", "jobBytesTotal", "study", "series", "jobRate", "jobSecondsLeft", "jobSummary"},
    "download": {"bytesReceived", "study", "series"},
    "extract": {"study", "series"},
    "save": {"size", "study", "series", "instance"},
    "complete": {"succeeded", "failed", "cancelled", "bytesDone", "bytesTotal", "seconds", "requests", "retries"},
    "error": {"kind", "study", "series", "instance"},
    "stats": {"totalInstanceCount", "totalSavedInstanceCount", "seriesKeys", "seriesDetails", "studyDetails",
              "warnings"},
    "series": {"key", "study", "series", "url", "size", "status", "instances", "savedInstances", "error"},
}

KEYS = {name: ORIGINAL.get(name, set()) | ADDED.get(name, set()) for name in {*ORIGINAL, *ADDED}}

# onSave's `file` (js-untar's extracted file: name and buffer) and onExtract's `files` entries.
SAVED_FILE_KEYS = {"name", "size", "buffer", "path"}      # buffer only for instances written in one piece
EXTRACTED_FILE_KEYS = {"name", "size"}


def tar_label(study: str, series: str) -> str:
    """The original's DownloadStats.series entry for a series still to fetch."""
    return f"{study}/ series/ {series}.tar"
