"""hkt-zoo: model sources for public model zoos (Hugging Face transformers, torchvision, timm) and an
offline token-id data set (token-recall)."""
