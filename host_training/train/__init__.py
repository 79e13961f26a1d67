"""What training is made of, for both paths: the corpus as token rows (`tokenizer`), the
held-out chunks (`heldout`), a tiny Llama of the owner's own words (`train_scratch`), and the
LoRA step on packed rows (`packing`, `lora_step`) that `finetune` drives."""
