"""Benchmark: GGUF-aware deltas vs. whole-file bsdiff4 vs. ``zstd -19 --patch-from``, same pairs, same run.

Three pairs made at run time from the default model (SmolLM2-135M Q4_1, ~98 MB):
(a) a few layers changed (1% of the bytes of blocks 0-2, as after a partial fine-tune);
(b) metadata only (a new chat template);
(c) every tensor slightly changed (0.1% of the bytes of every tensor).
Each operation runs in its own freshly exec'ed child process and reports its own peak RSS: ``VmHWM``
from ``/proc/self/status`` for Python operations (``ru_maxrss`` would include the memory of the big
parent it was forked from), and the zstd grandchild's ``ru_maxrss`` as seen by a small wrapper.
Every result is checked byte for byte against the new model.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linecrew.shared.delta import gguf_layout, sha256_file  # noqa: E402
from linecrew.shared.gguf_edit import perturb, rewrite  # noqa: E402
from linecrew.shared.models import default_llm_path  # noqa: E402

CHILD = r"""
import resource, sys, time, json
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
op, a, b, c = sys.argv[1:5]
if op == "ours_diff":
    from linecrew.shared.delta import make_delta; from pathlib import Path; make_delta(Path(a), Path(b), Path(c))
elif op == "ours_apply":
    from linecrew.shared.delta import apply_delta; from pathlib import Path
    with open(c, "wb") as f: apply_delta(Path(a), Path(b), f)
elif op == "bsdiff_diff":
    import bsdiff4; bsdiff4.file_diff(a, b, c)
elif op == "bsdiff_apply":
    import bsdiff4; bsdiff4.file_patch(a, c, b)
else:
    import subprocess; subprocess.run(sys.argv[5:], check=True, capture_output=True)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({{"s": time.perf_counter() - t0, "rss_kb": rss}})); sys.exit(0)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"s": time.perf_counter() - t0, "rss_kb": hwm}}))
"""


def run(op: str, a: Path, b: Path, c: Path, *cmd: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), op, str(a), str(b), str(c), *cmd],
                         capture_output=True, text=True, check=True)
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return round(d["s"], 2), round(d["rss_kb"] / 1024, 1)


def measure(tool: str, old: Path, new: Path, work: Path) -> dict[str, float]:
    patch, rebuilt = work / f"{tool}.patch", work / f"{tool}.out"
    if tool == "ours":
        diff = run("ours_diff", old, new, patch)
        apply = run("ours_apply", old, patch, rebuilt)
    elif tool == "bsdiff4":
        diff = run("bsdiff_diff", old, new, patch)
        apply = run("bsdiff_apply", old, patch, rebuilt)
    else:
        diff = run("cmd", old, new, patch, "zstd", "-q", "-f", "-19", "--long=27", f"--patch-from={old}", str(new),
                   "-o", str(patch))
        apply = run("cmd", old, patch, rebuilt, "zstd", "-q", "-f", "-d", "--long=27", f"--patch-from={old}",
                    str(patch), "-o", str(rebuilt))
    assert sha256_file(rebuilt) == sha256_file(new), f"{tool} did not rebuild the new model"
    result = {"patch_bytes": patch.stat().st_size, "diff_s": diff[0], "diff_peak_rss_mb": diff[1],
              "apply_s": apply[0], "apply_peak_rss_mb": apply[1]}
    patch.unlink()
    rebuilt.unlink()
    return result


def main() -> None:
    if not shutil.which("zstd"):
        sys.exit("zstd missing (make setup installs it)")
    work = Path(tempfile.mkdtemp(prefix="linecrew-bench-delta-"))
    old = default_llm_path()
    pairs = {
        "a_few_layers": rewrite(old, work / "a.gguf", transform=perturb(
            0.01, seed=1, only=lambda n: n.startswith(("blk.0.", "blk.1.", "blk.2.")))),
        "b_metadata_only": rewrite(old, work / "b.gguf", chat_template="{% for m in messages %}"
                                   "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"),
        "c_all_tensors": rewrite(old, work / "c.gguf", transform=perturb(0.001, seed=2)),
    }
    layout = gguf_layout(old)
    assert layout is not None
    largest = max(r.length for r in layout[1:]) / 2**20
    out = {}
    for name, new in pairs.items():
        out[name] = {tool: measure(tool, old, new, work) for tool in ("ours", "bsdiff4", "zstd")}
        out[name]["full_bytes"] = new.stat().st_size
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    result = {"benchmark": "delta", "model": old.name, "model_bytes": old.stat().st_size,
              "largest_tensor_mb": round(largest, 1), "pairs": out,
              "child_baseline_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
