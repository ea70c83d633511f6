"""neurolm_data: typed EEG ingestion into channel-standardized 200 Hz µV WebDataset shards.

Data flows one way: sources -> channels -> preprocessing -> recording store (+ recordings.parquet) ->
splits (splits.parquet) -> task windows -> shards (+ windows.parquet).
"""

__version__ = "0.1.0"
