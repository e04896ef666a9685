"""One module per figure of the paper's evaluation; `python -m experiments.figures` draws them all
(docs/figures.md)."""
