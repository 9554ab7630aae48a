"""GGUF files derived from a model (tests, benchmarks and the demo make update pairs this way; nothing fetched).

``rewrite`` copies a GGUF file through the ``gguf`` package's reader and writer, optionally replacing
the chat template (metadata-only change) and transforming tensor bytes (fine-tune-like changes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Transform = Callable[[str, np.ndarray], np.ndarray | None]


def rewrite(src: Path, dst: Path, *, chat_template: str | None = None, transform: Transform | None = None,
            extra_kv: dict[str, str] | None = None) -> Path:
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        if chat_template is not None and field.name == "tokenizer.chat_template":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for k, v in (extra_kv or {}).items():
        writer.add_string(k, v)
    datas = []
    for t in reader.tensors:
        data = np.array(t.data)
        if transform is not None:
            changed = transform(t.name, data)
            data = changed if changed is not None else data
        datas.append(data)
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in datas:
        writer.write_tensor_data(data, tensor_endianess=reader.endianess)
    writer.close()
    return dst


def perturb(fraction: float, *, seed: int = 0, only: Callable[[str], bool] = lambda _n: True) -> Transform:
    """Flip one low bit in ``fraction`` of the bytes of the selected tensors (quantised blocks stay valid)."""
    rng = np.random.default_rng(seed)

    def run(name: str, data: np.ndarray) -> np.ndarray | None:
        if not only(name):
            return None
        flat = data.view(np.uint8).reshape(-1).copy()
        idx = rng.choice(flat.size, size=max(1, int(flat.size * fraction)), replace=False)
        flat[idx] ^= 1
        return flat.view(data.dtype).reshape(data.shape)

    return run
