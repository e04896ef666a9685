"""The testbed across processes and hosts: each emulated node its own OS process of a
jax.distributed job, the scheduler (the shared `Dispatcher`) in one more, records over zmq, KV
between nodes over JAX's transfer server. docs/testbed.md, "Across processes and hosts"."""
