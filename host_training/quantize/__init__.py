"""F32 GGUF -> the shipped type (`quantizer`: the types, `--target BOARD`'s choice) with the
persona's own importance matrix (`imatrix`); the drift each type costs is measured in
evaluate/drift.py, which scores with the evaluator."""
