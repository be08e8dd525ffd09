"""jsarag: end-to-end training of retrieval-augmented generation (RAG, VRAG, JSA-RAG)."""

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad input (file, line, config key). The CLIs turn it into a clean non-zero exit."""
