"""hkt-zoo: model sources and adapters for public model zoos (Hugging Face transformers)."""
