"""Test helper process: apply (or resume) a model update on a device folder; may be SIGKILLed anywhere.

Prints ``ready`` once imports are done, so the test can time its kill from the start of the real work.
``LINECREW_TEST_STEP_DELAY`` (seconds) slows each step and each 1 MB installed, to spread kill points.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linecrew.agent.updates import Updater, llm_health_check
from linecrew.shared.release import load_trusted_root


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--payload", type=Path)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    delay = float(os.environ.get("LINECREW_TEST_STEP_DELAY", "0"))
    root = load_trusted_root(args.root.read_bytes(), now=time.time())
    up = Updater(args.dir, root=root, device_class="x86-dev", health=llm_health_check(budget_s=600),
                 step_hook=lambda _s: time.sleep(delay))
    print("ready", flush=True)
    rec = up.resume() if args.resume else up.apply(json.loads(args.manifest.read_text()), args.payload)
    print(json.dumps({"state": rec.state.value if rec else "idle", "error": rec.error if rec else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
