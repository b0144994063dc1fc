"""How large an uploaded image may be on the wire, apart from the code that reads it.

`xai_lab.data.uploads` decodes uploads (NumPy, PyTorch); the served app's upload budget and
`xai-lab serve`'s ``server.maxUploadSize`` need only this number, and must not load PyTorch to get it.
"""

from __future__ import annotations

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
