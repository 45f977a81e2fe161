"""The model and the interpreter: runtimes, delegates, the file format, loading.

``model.load_model`` is the entry point; ``interpreter`` holds the engine seam.
"""
