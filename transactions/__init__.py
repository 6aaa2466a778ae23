"""Transactions: orders and positions, their submission and settlement."""
