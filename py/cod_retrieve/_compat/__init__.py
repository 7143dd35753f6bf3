"""The one seam between "in Pyodide" and "not in Pyodide".

Everything else imports these names and never asks which runtime it is in
(the way micropip's `_compat` does it).
"""

from __future__ import annotations

import sys

IN_PYODIDE = "_pyodide_core" in sys.modules or sys.platform == "emscripten"

if IN_PYODIDE:
    from ._in_pyodide import (  # noqa: F401
        BrowserFolder as NativeFolder,
        deliver_file,
        new_crc32c,
        open_url,
        private_folder,
        service_worker_downloads,
    )
else:
    from ._not_in_pyodide import (  # noqa: F401
        LocalFolder as NativeFolder,
        deliver_file,
        new_crc32c,
        open_url,
        private_folder,
    )

    async def service_worker_downloads():
        """Streamed browser downloads exist only in the browser."""
        return None

__all__ = ["IN_PYODIDE", "NativeFolder", "deliver_file", "new_crc32c", "open_url", "private_folder",
           "service_worker_downloads"]
