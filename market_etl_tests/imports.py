"""What a fresh interpreter imports: tests that keep heavy packages (pyspark) off the paths that do not need them."""
from __future__ import annotations

import json
import subprocess
import sys


def modules_imported_by(code: str, package: str) -> list[str]:
    """The modules of `package` in sys.modules after a fresh interpreter runs `code` (fails if `code` fails)."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == {package!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])
