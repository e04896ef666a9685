"""A checkpoint's tokenizer (its tokenizer.json, through the `tokenizers` library) and its stop tokens.

Stop tokens are the `eos_token_id` of generation_config.json, else of config.json (an int or a
list, as Hugging Face writes them). tokenizer_config.json's `add_bos_token` / `bos_token` are
honoured where the file has them (DeepSeek's tokenizer.json adds no BOS itself; its
tokenizer_config.json asks for one). No chat template is applied: turns are plain text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..model.hf import CheckpointError

TOKENIZER_FILE = "tokenizer.json"


def _read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when the file is absent; a bad file is a CheckpointError."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def stop_token_ids(directory: str | os.PathLike) -> tuple[int, ...]:
    """eos_token_id from generation_config.json (first) or config.json, as a tuple of ids."""
    for name in ("generation_config.json", "config.json"):
        path = Path(directory) / name
        data = _read_json(path)
        if data is None or data.get("eos_token_id") is None:
            continue
        value = data["eos_token_id"]
        ids = value if isinstance(value, list) else [value]
        if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
            raise CheckpointError(f"{path}: field 'eos_token_id': {value!r} is not a token id or a list of ids")
        return tuple(ids)
    return ()


class Tokenizer:
    """Text <-> token ids for one checkpoint; `stop_ids` are its end-of-sequence ids."""

    def __init__(self, directory: str | os.PathLike, vocab_size: int | None = None):
        from tokenizers import Tokenizer as HFTokenizer

        self.path = Path(directory) / TOKENIZER_FILE
        if not self.path.is_file():
            raise CheckpointError(
                f"{self.path}: no tokenizer.json in the checkpoint directory (text generation needs it)"
            )
        try:
            self._tok = HFTokenizer.from_file(str(self.path))
        except Exception as e:  # the library raises a bare Exception with serde's message
            raise CheckpointError(f"{self.path}: not a tokenizers file ({e})") from None
        size = self._tok.get_vocab_size(with_added_tokens=True)
        if vocab_size is not None and size > vocab_size:
            raise CheckpointError(f"{self.path}: {size} tokens, more than the model's vocab_size {vocab_size}")
        self.stop_ids = stop_token_ids(directory)
        self.bos_id = self._bos_id(Path(directory) / "tokenizer_config.json")

    def _bos_id(self, path: Path) -> int | None:
        """The id to put first (tokenizer_config.json add_bos_token), or None."""
        data = _read_json(path)
        if not data or not data.get("add_bos_token"):
            return None
        bos = data.get("bos_token")
        text = bos.get("content") if isinstance(bos, dict) else bos
        token_id = self._tok.token_to_id(text) if isinstance(text, str) else None
        if token_id is None:
            raise CheckpointError(f"{path}: field 'bos_token': {bos!r} is not a token of {self.path.name}")
        return token_id

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, first: bool = True) -> list[int]:
        """Token ids of `text`; `first`: it starts a sequence (BOS and the file's own specials)."""
        ids = self._tok.encode(text, add_special_tokens=first).ids
        if first and self.bos_id is not None and ids[:1] != [self.bos_id]:
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens (BOS, EOS) left out."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)
