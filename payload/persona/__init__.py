"""The persona aloft: the worker process that runs the model, the prompt built from what the
payload senses and remembers, the guard on what it may say, its memory, and its questions to
the ground."""
