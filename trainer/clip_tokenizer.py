"""CLIP's tokenizer, written to a folder from the BPE vocabulary open-clip-torch ships: no download.

Every Stable Diffusion text encoder (SD 1.x, SD 2.x's OpenCLIP, both of SDXL's) reads CLIP's byte-level
BPE vocabulary. Single-file checkpoints carry no tokenizer, so trainer.models writes this one beside
the shipped configs; the tiny test models use it too, so their prompts tokenize to the real ids.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

# The CLIP tokenizer: 256 byte symbols, the same with the end-of-word mark, 48,894 merges, and the
# two specials, as OpenAI's simple_tokenizer.py builds it.
N_MERGES = 49152 - 256 - 2
CLIP_VOCAB_SIZE = 49408
MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI's byte -> printable-character map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


@cache
def _clip_bpe() -> tuple[list[str], list[str]]:
    """(vocabulary in id order, merges) from open-clip-torch's copy of CLIP's BPE file."""
    import open_clip

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1:N_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)
    return vocab, merges


def write_clip_tokenizer(out_dir: str | Path):
    """Write vocab.json + merges.txt (and tokenizer.json) for CLIP's tokenizer; return the tokenizer."""
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _clip_bpe()
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), "utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(out, model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(out)
    return tokenizer
