"""The generate command's options: `key=value` arguments checked into a GenerateOptions.

Not Hydra: a prompt is free text, and Hydra's override grammar reads its commas, brackets,
quotes and `=` as syntax (`prompt=Hello, world` is refused as an ambiguous list), while nothing
here composes config groups or sweeps. Each key may appear once, except `prompt` and `stop`,
which repeat. A bad key or value is an OptionError naming it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .params import SamplingParams

DTYPES = ("bfloat16", "float32")
REPEATED = ("prompt", "stop")


class OptionError(ValueError):
    """A bad command-line option: the message names the key."""


@dataclasses.dataclass(frozen=True)
class GenerateOptions:
    checkpoint: Path
    prompts: tuple[str, ...]
    sampling: SamplingParams
    dtype: str = "bfloat16"
    stop: tuple[str, ...] = ()
    chat: bool = False
    store: Path | None = None  # chat KV store directory; None: a temporary one
    block_tokens: int = 64  # the store's default Full Block (docs/kvstore.md)
    store_blocks: int = 1024


HELP = """\
python -m experiments.generate checkpoint=DIR prompt="..." [key=value ...]

  checkpoint=DIR        Hugging Face DeepSeek-V2/V3 checkpoint (config.json, *.safetensors, tokenizer.json)
  prompt=TEXT           a prompt; repeat for a batch (or, with chat=true, one turn each)
  prompts=FILE          prompts from a file, one per line (blank lines skipped)
  max_new_tokens=32     tokens to generate per prompt / turn
  temperature=0         0: greedy; > 0: sample softmax(logits / temperature)
  top_p=1               nucleus sampling: the most likely tokens holding top_p of the mass
  seed=0                jax.random seed of the sampling
  dtype=bfloat16        bfloat16 or float32 weights and activations
  stop=TEXT             stop text (repeatable); the checkpoint's eos_token_id always stops
  chat=false            true: the prompts are turns of one conversation, KV reused through the store
  store=DIR             chat KV store directory (default: a temporary one, removed at exit)
  block_tokens=64       tokens per stored KV block (chat)
  store_blocks=1024     store capacity in blocks (chat)
"""


def _int(key: str, value: str, low: int | None = None) -> int:
    try:
        n = int(value)
    except ValueError:
        raise OptionError(f"{key}: {value!r} is not an integer") from None
    if low is not None and n < low:
        raise OptionError(f"{key}: must be >= {low}, got {n}")
    return n


def _float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise OptionError(f"{key}: {value!r} is not a number") from None


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise OptionError(f"{key}: {value!r} is not true or false")


def read_prompt_file(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise OptionError(f"prompts: {p} is not a file")
    return [line for line in p.read_text().splitlines() if line.strip()]


def parse(argv: list[str]) -> GenerateOptions:
    """key=value arguments -> GenerateOptions (OptionError naming the key on bad input)."""
    known = {f.name for f in dataclasses.fields(GenerateOptions)} - {"prompts", "sampling"}
    known |= {"prompt", "prompts"} | {f.name for f in dataclasses.fields(SamplingParams)}
    given: dict[str, str] = {}
    repeated: dict[str, list[str]] = {k: [] for k in REPEATED}
    for arg in argv:
        key, eq, value = arg.partition("=")
        key = key.lstrip("+")
        if not eq:
            raise OptionError(f"{arg!r}: expected key=value (see --help)")
        if key not in known:
            raise OptionError(f"{key}: unknown option (known: {', '.join(sorted(known))})")
        if key in REPEATED:
            repeated[key].append(value)
        elif key in given:
            raise OptionError(f"{key}: given twice")
        else:
            given[key] = value
    if "checkpoint" not in given:
        raise OptionError("checkpoint: missing (checkpoint=DIR)")
    checkpoint = Path(given["checkpoint"])
    if not checkpoint.is_dir():
        raise OptionError(f"checkpoint: {checkpoint} is not a directory")
    prompts = repeated["prompt"] + (read_prompt_file(given["prompts"]) if "prompts" in given else [])
    if not prompts or any(not p for p in prompts):
        raise OptionError("prompt: give at least one non-empty prompt= (or prompts=FILE)")
    if any(not s for s in repeated["stop"]):
        raise OptionError("stop: empty stop text (it would stop at once)")
    dtype = given.get("dtype", "bfloat16")
    if dtype not in DTYPES:
        raise OptionError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    try:
        sampling = SamplingParams(
            max_new_tokens=_int("max_new_tokens", given.get("max_new_tokens", "32")),
            temperature=_float("temperature", given.get("temperature", "0")),
            top_p=_float("top_p", given.get("top_p", "1")),
            seed=_int("seed", given.get("seed", "0")),
        )
    except ValueError as e:
        raise OptionError(str(e)) from None
    return GenerateOptions(
        checkpoint=checkpoint,
        prompts=tuple(prompts),
        sampling=sampling,
        dtype=dtype,
        stop=tuple(repeated["stop"]),
        chat=_bool("chat", given.get("chat", "false")),
        store=Path(given["store"]) if "store" in given else None,
        block_tokens=_int("block_tokens", given.get("block_tokens", "64"), low=1),
        store_blocks=_int("store_blocks", given.get("store_blocks", "1024"), low=1),
    )
