"""Named SEATER recipes selected by ``--preset`` (config layers: defaults < preset < file <
flags < --set). ``default`` is the project's own configuration."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
}
