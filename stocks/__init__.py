"""Stocks: OHLCV quotes (market data), their ingestion and latest-quote reads."""
