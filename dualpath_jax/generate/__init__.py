"""Text generation on a loaded Hugging Face checkpoint. See docs/model.md "Text generation".

Modules (imported one by one, so that `options` and `params` load without JAX and the command
refuses a bad option at once): `tokenizer` (tokenizer.json, stop ids), `params` (SamplingParams),
`sampling` (greedy / temperature / top-p), `engine` (Generator: jitted prefill and batched
decode), `stops` (stop text), `prefix_store` (a chat's prefix KV in the KV store), `chat`
(ChatSession), `options` (the command's key=value options).
"""
