"""Workstation pipeline: exports -> scrubbed conversations -> persona model -> GGUF bundle.

Submodules keep their heavy imports (torch, transformers, llama_cpp) inside functions
so `python -m host_training --help` answers at once.
"""
