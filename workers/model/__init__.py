"""The builtin model: a character tokenizer, the arithmetic format and the from-scratch bootstrap."""
