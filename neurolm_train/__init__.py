"""neurolm_train: a lean PyTorch trainer for the three NeuroLM stages, streaming WebDataset shards."""

__version__ = "0.1.0"
