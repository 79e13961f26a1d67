"""HF checkpoint -> F32 GGUF by llama.cpp's own converter (`convert_gguf`, `llama_convert`,
the unpacked source in `llama_cpp_source`), the tokenizer's pre-tokenizer named for llama.cpp
(`pretokenizers`) and the vocabulary rows a GGUF must carry (`vocab_rows`)."""
